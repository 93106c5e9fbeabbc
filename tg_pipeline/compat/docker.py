"""Private names of docker-py (``docker>=7,<8``), see :mod:`tg_pipeline.compat`: the log and exec frame
readers, the SDK imported without paramiko, and the SSH adapter that rides on our fabric connection."""
from __future__ import annotations
import struct
import sys


def import_docker_without_paramiko() -> None:
    """Import the Docker SDK without its paramiko transport, unless either is imported already. Done when this
    module is imported: modules of ours take the SDK as ``from tg_pipeline.compat.docker import docker``."""
    if 'docker' in sys.modules or 'paramiko' in sys.modules:
        return
    # None makes `import paramiko` raise ImportError, just this once (typeshed allows modules only)
    sys.modules['paramiko'] = None  # type: ignore[assignment]
    try:
        import docker  # noqa: F401
    finally:
        del sys.modules['paramiko']


import_docker_without_paramiko()
import docker  # noqa: E402,F401  (the SDK, for the modules of tg_pipeline)
import requests  # noqa: E402  (docker-py's HTTP client)
import urllib3  # noqa: E402

# what a request to the engine raises when the engine's answer stops coming (no bytes for the client's timeout, 60
# s: e.g. while the engine waits on an unreachable registry) or the connection breaks: requests' errors, and
# urllib3's, which docker-py's streamed answers (push, pull, logs) let through unwrapped
TRANSPORT_ERRORS = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError)


def start_with_stdin(client, container_id: str, data: bytes) -> None:
    """Start a created container (made with stdin open, for one attach) with ``data`` on its standard input, then
    its end: attached before the start (``attach_socket``, the hijacked connection: a socket here, a paramiko
    channel over SSH; the socket's write side is ``SocketIO._sock``), written, its write side shut."""
    import socket
    api = client.api
    hijacked = api.attach_socket(container_id, params={'stdin': 1, 'stream': 1})
    raw = getattr(hijacked, '_sock', hijacked)
    try:
        api.start(container_id)
        raw.sendall(data)
        if hasattr(raw, 'shutdown_write'):  # a paramiko channel
            raw.shutdown_write()
        else:
            raw.shutdown(socket.SHUT_WR)
    finally:
        hijacked.close()


def log_frames(client, container_id: str, follow: bool = True, streams=(1, 2)):
    """(stream, bytes) frames of a container's whole log from its first byte: stream 1 stdout, 2 stderr
    (of ``streams`` only), one frame at a time (the engine's frames are at most 16 KiB)."""
    api = client.api
    params = {'stdout': int(1 in streams), 'stderr': int(2 in streams), 'follow': int(follow), 'timestamps': 0,
              'tail': 'all'}
    response = api._get(api._url('/containers/{0}/logs', container_id), stream=True, params=params)
    yield from _frames(api, response)


def exec_frames(client, exec_id: str):
    """(stream, bytes) frames of a created exec's output, as it runs (stream 1 stdout, 2 stderr).

    Started as ``exec_start`` does (``APIClient._post_json``, asking to upgrade the connection), then read from
    the connection's buffered file (``response.raw._fp.fp``), which holds the bytes that came with the response
    headers: ``exec_start`` reads the bare socket and misses those over SSH, and without the upgrade the engine
    answers "read until close", where http.client closes the SSH channel at once."""
    api = client.api
    response = api._post_json(api._url('/exec/{0}/start', exec_id), data={'Tty': False, 'Detach': False},
                              headers={'Connection': 'Upgrade', 'Upgrade': 'tcp'}, stream=True)
    source = response.raw._fp.fp if response.status_code == 101 else response.raw
    yield from _frames(api, response, source)


def _frames(api, response, source=None):
    api._raise_for_status(response)
    source = response.raw if source is None else source
    try:
        api._disable_socket_timeout(api._get_raw_response_socket(response))  # a job may be silent for hours
    except (AttributeError, TypeError):
        pass  # not a real socket (a fake engine in the unit tests)
    try:
        while True:
            header = _read_exactly(source, 8)
            if len(header) < 8:
                return
            kind, length = struct.unpack('>BxxxL', header)
            yield kind, (_read_exactly(source, length) if length else b'')
    finally:
        response.close()


def _read_exactly(raw, length: int) -> bytes:
    chunks, left = [], length
    while left:
        chunk = raw.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b''.join(chunks)


# the version a client made by docker_over_fabric/docker_over_channels speaks until negotiate() asks the engine
# (Docker 20.10's): no request is made with it
FIRST_API_VERSION = '1.41'
POOL_SIZE = 2  # idle Docker API channels kept per SSH connection (each is a session: sshd allows 10)


def docker_over_fabric(connection, version: str, timeout: int = 60, translate=None):
    """A DockerClient whose every request rides on ``connection`` (an open fabric Connection): docker-py's SSH
    adapter with its paramiko client swapped for the connection's (same login, same host-key policy), each
    HTTP connection a ``docker system dial-stdio`` channel of it, reused from ONE pool of at most
    :data:`POOL_SIZE` idle channels. ``translate(exception)`` may turn a paramiko error of a request into
    one of ours (returns None to keep it)."""
    import paramiko
    from docker.transport.sshconn import SSHConnectionPool, SSHHTTPAdapter

    class FabricAdapter(SSHHTTPAdapter):
        def __init__(self):
            self._fabric = connection
            super().__init__(f'ssh://{connection.host}', timeout=timeout, max_pool_size=POOL_SIZE, shell_out=False)

        def _create_paramiko_client(self, base_url):
            self.ssh_client = self._fabric.client

        def _connect(self):
            self._fabric.open()  # reconnects with the same settings and host-key policy

        def get_connection(self, url, proxies=None):
            with self.pools.lock:
                pool = self.pools.get('ssh')
                if pool is None:
                    if not self.ssh_client.get_transport():
                        self._connect()
                    pool = SSHConnectionPool(ssh_client=self.ssh_client, timeout=self.timeout,
                                             maxsize=self.max_pool_size, host=self.ssh_host)
                    self.pools['ssh'] = pool
            return pool

        def send(self, request, *args, **kwargs):
            try:
                return super().send(request, *args, **kwargs)
            except paramiko.SSHException as e:
                ours = translate(e) if translate else None
                if ours is None:
                    raise
                raise ours from None

    return _client_through(FabricAdapter(), 'http+docker://ssh', 'http+docker://ssh', version, timeout)


def _client_through(adapter, prefix: str, base_url: str, version: str, timeout: int):
    """A DockerClient whose every request goes through ``adapter``: made for a placeholder address (no request
    is made with it: the version is given; :func:`negotiate` asks the engine's), then the adapter mounted for
    ``prefix`` (``APIClient._custom_adapter``, ``mount``, ``base_url``: see the module's list)."""
    client = docker.DockerClient(base_url='tcp://127.0.0.1:9', version=version, timeout=timeout)
    client.api._custom_adapter = adapter
    client.api.mount(prefix, adapter)
    client.api.base_url = base_url
    return client


def docker_over_channels(open_channel, version: str, timeout: int = 60, pool_size: int = POOL_SIZE):
    """A DockerClient whose every HTTP connection is a socket ``open_channel()`` returns (the ssh program's
    ``docker system dial-stdio`` on a shared connection, see :mod:`tg_pipeline.ssh.openssh`), kept in ONE pool of
    at most ``pool_size`` idle ones. docker-py's own ``use_ssh_client`` transport runs ``ssh`` the same way, but
    imports paramiko and takes no options; this one is built on the SDK's ``BaseHTTPAdapter`` as its unix socket
    adapter is, mounted under a client (``APIClient._custom_adapter``, ``base_url``), and a real socket (a
    socketpair's end) lets the log and exec readers work on it as on the engine's own socket."""
    import urllib3.connection
    import urllib3.connectionpool
    from docker.transport.basehttpadapter import BaseHTTPAdapter

    class ChannelConnection(urllib3.connection.HTTPConnection):
        def connect(self):
            sock = open_channel()
            sock.settimeout(self.timeout)
            self.sock = sock

    class ChannelPool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = ChannelConnection

    class ChannelAdapter(BaseHTTPAdapter):
        def __init__(self):
            self.pool = ChannelPool('localhost', timeout=timeout, maxsize=pool_size)
            super().__init__()

        def get_connection(self, url, proxies=None):
            return self.pool

        def request_url(self, request, proxies):
            return request.path_url

        def close(self):
            self.pool.close()
            super().close()

    return _client_through(ChannelAdapter(), 'http+docker://', 'http+docker://channel', version, timeout)


def negotiate(client, timeout: float) -> str:
    """Ask the engine its API version (the unversioned ``/version``, as docker-py's ``version='auto'`` does, but
    giving up after ``timeout`` seconds) and speak it from now on (``APIClient._version``); the engine's answer.
    A pinned version breaks on some engine: Docker 29 refuses every version below 1.44, Docker 20.10 every one
    above 1.41. The request is also the first answer that says the channel works."""
    api = client.api
    answer = api._result(api._get(api.base_url + '/version', timeout=timeout), json=True)
    version = str(answer['ApiVersion'])
    api._version = version
    return version
