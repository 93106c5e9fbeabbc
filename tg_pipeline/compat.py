"""Every use of a private name of a dependency, in one place, behind the version ranges they were checked on.

* docker-py (``docker>=7,<8``):
  - :func:`log_frames` reads a container's log as the engine sends it (8-byte frame headers, stdout and
    stderr apart, bytes exact) through ``APIClient._get/_url/_raise_for_status/_get_raw_response_socket/
    _disable_socket_timeout``: the public ``logs(stream=True)`` merges the two streams, and ``attach``
    over SSH loses the bytes buffered with the response headers.
  - :func:`docker_over_fabric` subclasses docker-py's ``SSHHTTPAdapter`` (overriding ``_create_paramiko_client``,
    ``_connect``, ``ssh_client``) and mounts it under a client (``APIClient._custom_adapter``, ``base_url``), so
    that the Docker API rides on our open fabric connection.
  - :func:`import_docker_without_paramiko` imports the SDK without its paramiko transport (0.13 s of imports
    a local run never needs), relying on the SDK guarding that import with ``except ImportError``.
* doit (``doit>=0.36,<0.38``): :func:`command_line_vars` reads ``doit_cmd._CMDLINE_VARS`` (all ``name=value``
  variables; the public ``get_var`` answers one name at a time); :func:`share_doit_state` sets the sqlite3
  backend's connection (``SqliteDB._conn``) to autocommit with a busy timeout, so that a failed task's
  pending delete does not lock every other doit process out of the shared state (see :mod:`tg_pipeline.locks`);
  :func:`outcome_stream` tells doit's capture of a python-action's stdout (``doit.action.Writer`` without
  ``orig_stream``, at ``-v 0``/``-v 1``) from a stdout that reaches the terminal; :func:`console_reporter`
  is doit's ``ConsoleReporter`` (``execute_task``) without the ``.  TASK`` line of a task whose output is a
  document (``meta={'document': True}``: ``doit config`` prints TOML and nothing else).

``tests/unit/test_compat.py`` checks that the installed versions are in range and that these names exist.
"""
from __future__ import annotations

import struct
import sys

DOCKER_RANGE = ((7, 0), (8, 0))
DOIT_RANGE = ((0, 36), (0, 38))


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split('.') + ['0'])[:2]
    return int(major), int(''.join(c for c in minor if c.isdigit()) or 0)


def problems() -> list[str]:
    """What is off with the installed dependencies, for the private names used here (empty: all good)."""
    import docker
    import doit
    from doit import doit_cmd
    found = []
    for name, version, (low, high) in (('docker', docker.__version__, DOCKER_RANGE),
                                       ('doit', '.'.join(map(str, doit.__version__)) if isinstance(
                                           doit.__version__, tuple) else doit.__version__, DOIT_RANGE)):
        if not low <= _version(version) < high:
            found.append(f'{name} {version} is outside {low}..{high}')
    api = docker.APIClient
    for attr in ('_get', '_url', '_raise_for_status', '_get_raw_response_socket', '_disable_socket_timeout'):
        if not hasattr(api, attr):
            found.append(f'docker.APIClient.{attr} is gone')
    from docker.transport.sshconn import SSHHTTPAdapter
    for attr in ('_create_paramiko_client', '_connect'):
        if not hasattr(SSHHTTPAdapter, attr):
            found.append(f'SSHHTTPAdapter.{attr} is gone')
    if not hasattr(doit_cmd, '_CMDLINE_VARS'):
        found.append('doit.doit_cmd._CMDLINE_VARS is gone')
    from doit.action import Writer
    if not hasattr(Writer(), 'orig_stream'):
        found.append('doit.action.Writer.orig_stream is gone')
    return found


def import_docker_without_paramiko() -> None:
    if 'docker' in sys.modules or 'paramiko' in sys.modules:
        return
    sys.modules['paramiko'] = None  # makes `import paramiko` raise ImportError, just this once
    try:
        import docker  # noqa: F401
    finally:
        del sys.modules['paramiko']


def log_frames(client, container_id: str, follow: bool = True, streams=(1, 2)):
    """(stream, bytes) frames of a container's whole log from its first byte: stream 1 stdout, 2 stderr
    (of ``streams`` only), one frame at a time (the engine's frames are at most 16 KiB)."""
    api = client.api
    params = {'stdout': int(1 in streams), 'stderr': int(2 in streams), 'follow': int(follow), 'timestamps': 0,
              'tail': 'all'}
    response = api._get(api._url('/containers/{0}/logs', container_id), stream=True, params=params)
    api._raise_for_status(response)
    try:
        api._disable_socket_timeout(api._get_raw_response_socket(response))  # a job may be silent for hours
    except (AttributeError, TypeError):
        pass  # not a real socket (a fake engine in the unit tests)
    try:
        while True:
            header = response.raw.read(8)
            if len(header) < 8:
                return
            kind, length = struct.unpack('>BxxxL', header)
            yield kind, (_read_exactly(response.raw, length) if length else b'')
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


def docker_over_fabric(connection, version: str, timeout: int = 60):
    """A DockerClient whose every request rides on ``connection`` (an open fabric Connection): docker-py's SSH
    adapter with its paramiko client swapped for the connection's (same login, same host-key policy), each
    HTTP connection a ``docker system dial-stdio`` channel of it."""
    import docker
    from docker.transport.sshconn import SSHHTTPAdapter

    class FabricAdapter(SSHHTTPAdapter):
        def __init__(self):
            self._fabric = connection
            super().__init__(f'ssh://{connection.host}', timeout=timeout, shell_out=False)

        def _create_paramiko_client(self, base_url):
            self.ssh_client = self._fabric.client

        def _connect(self):
            self._fabric.open()  # reconnects with the same settings and host-key policy

    # a client for a placeholder address (no request is made with it: the version is given), then every
    # request goes through the adapter
    client = docker.DockerClient(base_url='tcp://127.0.0.1:9', version=version, timeout=timeout)
    adapter = FabricAdapter()
    client.api._custom_adapter = adapter
    client.api.mount('http+docker://ssh', adapter)
    client.api.base_url = 'http+docker://ssh'
    return client


DOIT_BUSY_TIMEOUT_MS = 60_000


def share_doit_state(dep_manager) -> None:
    """Autocommit + a long busy timeout on doit's sqlite3 connection (other backends: nothing)."""
    import sqlite3
    conn = getattr(getattr(dep_manager, 'backend', None), '_conn', None)
    if not isinstance(conn, sqlite3.Connection):
        return
    try:
        if conn.isolation_level is not None:
            conn.isolation_level = None  # commits what is pending; each later statement commits itself
            conn.execute(f'PRAGMA busy_timeout = {DOIT_BUSY_TIMEOUT_MS}')
    except sqlite3.ProgrammingError:  # already closed: the run is over
        pass


def command_line_vars() -> dict[str, str]:
    """doit's ``name=value`` command-line variables."""
    from doit import doit_cmd
    return dict(getattr(doit_cmd, '_CMDLINE_VARS', None) or {})


def outcome_stream():
    """Where the outcome of a task goes (``Result: ...``): its stdout, unless doit captures that stdout without
    showing it (``doit -v 0``, ``-v 1``: only a failure shows it), then the process's own stdout."""
    out = sys.stdout
    try:
        from doit.action import Writer
    except ImportError:  # pragma: no cover - doit is a dependency
        return out
    if isinstance(out, Writer) and getattr(out, 'orig_stream', None) is None and sys.__stdout__ is not None:
        out.flush()
        return sys.__stdout__
    return out


def console_reporter():
    """doit's console reporter, except that a task printing a document (``meta={'document': True}``) is not
    announced: its output is the document alone (``doit config > settings.toml``)."""
    from doit.reporter import ConsoleReporter

    class Reporter(ConsoleReporter):
        def execute_task(self, task):
            if not (getattr(task, 'meta', None) or {}).get('document'):
                super().execute_task(task)
    return Reporter
