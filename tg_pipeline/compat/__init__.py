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
  - :func:`docker_over_channels` builds an adapter on the SDK's ``docker.transport.basehttpadapter.BaseHTTPAdapter``
    (as its own unix socket adapter is) whose connections are sockets the ssh program's channels give, and mounts it
    under a client (``APIClient._custom_adapter``, ``base_url``); :func:`negotiate` asks the unversioned ``/version``
    with a timeout of its own and sets the version the client speaks (``APIClient._result/_get/base_url/_version``).
  - :func:`start_with_stdin` writes to a container's stdin through ``attach_socket``'s hijacked connection, whose
    write side is the socket under ``SocketIO._sock`` (a paramiko channel over SSH): secret_env values.
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
  pending delete does not lock every other doit process out of the shared state (see :mod:`tg_pipeline.workflow.locks`);
  :func:`outcome_stream` tells doit's capture of a python-action's stdout (``doit.action.Writer`` without
  ``orig_stream``, at ``-v 0``/``-v 1``) from a stdout that reaches the terminal; :func:`console_reporter`
  is doit's ``ConsoleReporter`` with the step lines of :mod:`tg_pipeline.workflow.reporter` instead of doit's
  ``.  TASK`` / ``-- TASK`` lines (its hooks ``execute_task``, ``add_success``, ``add_failure``,
  ``skip_uptodate``, ``skip_ignore``, ``complete_run``, and ``task.io.capture``, ``task.meta``).
* python-dotenv (``python-dotenv>=1.0,<2``): :func:`~.dotenv.bindings` reads an env file with
  ``dotenv.parser.parse_stream`` (each binding with its line and an ``error`` flag, nothing expanded): the
  public ``dotenv_values`` skips a bad line with a warning, where we name its file and line.

``tests/unit/test_compat.py`` checks that the installed versions are in range and that these names exist.
"""
from __future__ import annotations


DOCKER_RANGE = ((7, 0), (8, 0))
DOIT_RANGE = ((0, 36), (0, 38))
PARAMIKO_RANGE = ((3, 2), (6, 0))
DOTENV_RANGE = ((1, 0), (2, 0))


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split('.') + ['0'])[:2]
    return int(major), int(''.join(c for c in minor if c.isdigit()) or 0)


def problems() -> list[str]:
    """What is off with the installed dependencies, for the private names used here (empty: all good)."""
    import importlib.metadata
    import docker
    import doit
    import dotenv.parser
    import paramiko
    from doit import doit_cmd
    found = []
    for name, version, (low, high) in (('docker', docker.__version__, DOCKER_RANGE),
                                       ('doit', '.'.join(map(str, doit.__version__)) if isinstance(
                                           doit.__version__, tuple) else doit.__version__, DOIT_RANGE),
                                       ('paramiko', paramiko.__version__, PARAMIKO_RANGE),
                                       ('python-dotenv', importlib.metadata.version('python-dotenv'), DOTENV_RANGE)):
        if not low <= _version(version) < high:
            found.append(f'{name} {version} is outside {low}..{high}')
    api = docker.APIClient
    for attr in ('_get', '_post_json', '_url', '_raise_for_status', '_get_raw_response_socket',
                 '_disable_socket_timeout', '_result'):
        if not hasattr(api, attr):
            found.append(f'docker.APIClient.{attr} is gone')
    try:
        from docker.transport.basehttpadapter import BaseHTTPAdapter  # noqa: F401
    except ImportError:
        found.append('docker.transport.basehttpadapter.BaseHTTPAdapter is gone')
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
    if not hasattr(dotenv.parser, 'parse_stream') or not {'key', 'value', 'original', 'error'} <= set(
            getattr(dotenv.parser.Binding, '_fields', ())):
        found.append('dotenv.parser.parse_stream and its Binding(key, value, original, error) are gone')
    return found


