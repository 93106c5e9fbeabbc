"""Every use of a private name of a dependency, in one place, behind the version ranges they were checked on.

* docker-py (``docker>=7,<8``):
  - :func:`log_frames` reads a container's log as the engine sends it (8-byte frame headers, stdout and
    stderr apart, bytes exact) through ``APIClient._get/_url/_raise_for_status/_get_raw_response_socket/
    _disable_socket_timeout``: the public ``logs(stream=True)`` merges the two streams, and ``attach``
    over SSH loses the bytes buffered with the response headers. :func:`exec_frames` reads an exec's output
    the same way (``APIClient._post_json``, and ``response.raw._fp.fp`` after the connection upgrade), for the
    same reason (``exec_start`` reads the socket).
  - :func:`docker_over_fabric` subclasses docker-py's ``SSHHTTPAdapter`` (overriding ``_create_paramiko_client``,
    ``_connect``, ``ssh_client``) and mounts it under a client (``APIClient._custom_adapter``, ``base_url``), so
    that the Docker API rides on our open fabric connection.
  - :func:`import_docker_without_paramiko` imports the SDK without its paramiko transport (0.13 s of imports
    a local run never needs), relying on the SDK guarding that import with ``except ImportError``.
  - The adapter's :meth:`get_connection` keeps ONE connection pool (docker-py keys pools by the whole URL,
    so every new request path opened another SSH channel and kept it open: 25 at once, past OpenSSH's
    ``MaxSessions 10``); it hands the pool docker-py's ``SSHConnectionPool`` itself.
* paramiko (``paramiko>=3.2,<6``): :func:`track_received` wraps the transport's ``packetizer.read_message`` to
  note when the server last sent anything; :func:`keepalive_request` sends ``keepalive@openssh.com`` WITH
  want-reply through ``Transport._send_user_message`` (the public ``global_request`` either asks for no
  reply or blocks for it); :func:`agent_keys` reads the keys of an agent at a given socket through
  ``AgentSSH._connect`` (``paramiko.Agent`` only knows ``$SSH_AUTH_SOCK``).
* doit (``doit>=0.36,<0.38``): :func:`command_line_vars` reads ``doit_cmd._CMDLINE_VARS`` (all ``name=value``
  variables; the public ``get_var`` answers one name at a time); :func:`share_doit_state` sets the sqlite3
  backend's connection (``SqliteDB._conn``) to autocommit with a busy timeout, so that a failed task's
  pending delete does not lock every other doit process out of the shared state (see :mod:`tg_pipeline.locks`);
  :func:`outcome_stream` tells doit's capture of a python-action's stdout (``doit.action.Writer`` without
  ``orig_stream``, at ``-v 0``/``-v 1``) from a stdout that reaches the terminal; :func:`console_reporter`
  is doit's ``ConsoleReporter`` with the step lines of :mod:`tg_pipeline.reporting` instead of doit's
  ``.  TASK`` / ``-- TASK`` lines (its hooks ``execute_task``, ``add_success``, ``add_failure``,
  ``skip_uptodate``, ``skip_ignore``, ``complete_run``, and ``task.io.capture``, ``task.meta``).

``tests/unit/test_compat.py`` checks that the installed versions are in range and that these names exist.
"""
from __future__ import annotations

import os
import struct
import sys

DOCKER_RANGE = ((7, 0), (8, 0))
DOIT_RANGE = ((0, 36), (0, 38))
PARAMIKO_RANGE = ((3, 2), (6, 0))


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split('.') + ['0'])[:2]
    return int(major), int(''.join(c for c in minor if c.isdigit()) or 0)


def problems() -> list[str]:
    """What is off with the installed dependencies, for the private names used here (empty: all good)."""
    import docker
    import doit
    import paramiko
    from doit import doit_cmd
    found = []
    for name, version, (low, high) in (('docker', docker.__version__, DOCKER_RANGE),
                                       ('doit', '.'.join(map(str, doit.__version__)) if isinstance(
                                           doit.__version__, tuple) else doit.__version__, DOIT_RANGE),
                                       ('paramiko', paramiko.__version__, PARAMIKO_RANGE)):
        if not low <= _version(version) < high:
            found.append(f'{name} {version} is outside {low}..{high}')
    api = docker.APIClient
    for attr in ('_get', '_post_json', '_url', '_raise_for_status', '_get_raw_response_socket',
                 '_disable_socket_timeout'):
        if not hasattr(api, attr):
            found.append(f'docker.APIClient.{attr} is gone')
    from docker.transport.sshconn import SSHHTTPAdapter
    for attr in ('_create_paramiko_client', '_connect'):
        if not hasattr(SSHHTTPAdapter, attr):
            found.append(f'SSHHTTPAdapter.{attr} is gone')
    for owner, attr in ((paramiko.Transport, '_send_user_message'), (paramiko.Packetizer, 'read_message'),
                        (paramiko.agent.AgentSSH, '_connect')):
        if not hasattr(owner, attr):
            found.append(f'paramiko {owner.__name__}.{attr} is gone')
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


POOL_SIZE = 2  # idle Docker API channels kept per SSH connection (each is a session: sshd allows 10)


def docker_over_fabric(connection, version: str, timeout: int = 60, translate=None):
    """A DockerClient whose every request rides on ``connection`` (an open fabric Connection): docker-py's SSH
    adapter with its paramiko client swapped for the connection's (same login, same host-key policy), each
    HTTP connection a ``docker system dial-stdio`` channel of it, reused from ONE pool of at most
    :data:`POOL_SIZE` idle channels. ``translate(exception)`` may turn a paramiko error of a request into
    one of ours (returns None to keep it)."""
    import docker
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

    # a client for a placeholder address (no request is made with it: the version is given), then every
    # request goes through the adapter
    client = docker.DockerClient(base_url='tcp://127.0.0.1:9', version=version, timeout=timeout)
    adapter = FabricAdapter()
    client.api._custom_adapter = adapter
    client.api.mount('http+docker://ssh', adapter)
    client.api.base_url = 'http+docker://ssh'
    return client


def track_received(transport, callback) -> None:
    """Call ``callback()`` whenever ``transport`` has read a message from the server."""
    packetizer = transport.packetizer
    read = packetizer.read_message

    def read_message():
        message = read()
        callback()
        return message
    packetizer.read_message = read_message


def keepalive_request(transport) -> None:
    """Send ``keepalive@openssh.com`` asking for a reply (any reply proves the server is there); do not wait."""
    import paramiko
    from paramiko.common import cMSG_GLOBAL_REQUEST
    message = paramiko.Message()
    message.add_byte(cMSG_GLOBAL_REQUEST)
    message.add_string('keepalive@openssh.com')
    message.add_boolean(True)
    transport._send_user_message(message)


def agent_keys(path: str | None) -> tuple:
    """The keys of the SSH agent at ``path`` (None: ``$SSH_AUTH_SOCK``; no agent there: none)."""
    import socket

    import paramiko
    if path is None:
        agent = paramiko.Agent()
        return agent.get_keys()
    if not os.path.exists(path):
        return ()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    agent = paramiko.agent.AgentSSH()
    agent._connect(sock)
    return agent.get_keys()


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
    """doit's console reporter, printing the lines of :mod:`tg_pipeline.reporting`: one line per step that ran,
    with its duration; one line per job for the steps that were up to date; nothing for a task printing a
    document (``meta={'document': True}``: ``doit config > settings.toml``); failures as doit prints them.
    A task whose output doit does not capture (``io={'capture': False}``: runs, ``status``...) is named when
    it starts instead."""
    from doit.reporter import ConsoleReporter

    from tg_pipeline.reporting import StepLines

    def kind(task) -> dict:
        return {'streamed': getattr(getattr(task, 'io', None), 'capture', True) is False,
                'document': bool((getattr(task, 'meta', None) or {}).get('document'))}

    def shown(task) -> bool:
        return bool(task.actions) and task.name[0] != '_'

    class Reporter(ConsoleReporter):
        def __init__(self, outstream, options):
            super().__init__(outstream, options)
            self.lines = StepLines(self._write_now)
            self.failed = []

        def _write_now(self, text):
            self.write(text)
            flush = getattr(self.outstream, 'flush', None)
            if flush:
                flush()

        def execute_task(self, task):
            if shown(task):
                self.lines.started(task.title(), **kind(task))

        def add_success(self, task):
            if shown(task):
                self.lines.succeeded(task.title(), **kind(task))

        def add_failure(self, task, fail):
            self.lines.failed(task.title())
            self.failed.append(fail)  # also those it does not print (report=False: said as ERROR/TIP already)
            super().add_failure(task, fail)

        def skip_uptodate(self, task):
            if task.name[0] != '_':
                self.lines.up_to_date(task.title())

        def skip_ignore(self, task):
            self.lines.flush()
            super().skip_ignore(task)

        def complete_run(self):
            self.lines.flush()
            super().complete_run()
            if doit_command_line():
                flush = getattr(self.outstream, 'flush', None)
                if flush:
                    flush()
                exit_now(doit_exit_code(self.failed, self.runtime_errors))
    return Reporter


def doit_command_line() -> bool:
    """Whether this process is the ``doit`` command (``doit ...`` or ``python -m doit ...``), not a program that
    runs doit inside (the Python API, a test, ``python -m cProfile -m doit``, ``coverage run -m doit``)."""
    orig = getattr(sys, 'orig_argv', None)  # Python 3.10+: the interpreter's own command line
    if orig is not None:
        args, i = orig[1:], 0
        while i < len(args) and args[i].startswith('-') and args[i] != '-m':
            i += 2 if args[i] in ('-X', '-W') else 1
        return args[i:i + 2] == ['-m', 'doit'] or (i < len(args) and os.path.basename(args[i]) == 'doit')
    main = sys.modules.get('__main__')
    return os.path.basename(sys.argv[0] if sys.argv else '') == 'doit' or \
        getattr(getattr(main, '__spec__', None), 'name', '') == 'doit.__main__'


def doit_exit_code(failures: list, runtime_errors: list) -> int:
    """The code doit's runner returns after these failures (doit's TaskFailed / TaskError): 2 for an error (an
    exception, not a task's failure), else 1 for a failure, else 0 (doit.runner: ``final_result``)."""
    from doit.exceptions import TaskFailed
    if runtime_errors or any(not isinstance(f, TaskFailed) for f in failures):
        return 2
    return 1 if failures else 0


def exit_now(code: int) -> None:
    """End the process with ``code`` once the exit handlers have run (atexit: logging, SSH connections ...), without
    the interpreter's teardown of every module, which for docker, paramiko and fabric loaded takes ~60 ms of
    every command. Not with TG_PIPELINE_DEBUG=1, nor while a thread the normal exit would wait for still runs.
    ``atexit._run_exitfuncs`` is CPython's (3.9 to 3.13); without it, nothing is done."""
    import atexit
    import threading
    run_handlers = getattr(atexit, '_run_exitfuncs', None)
    waiting = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if os.environ.get('TG_PIPELINE_DEBUG') == '1' or run_handlers is None or waiting:
        return
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (doit list | head): nothing more to say
            pass
    os._exit(code)
