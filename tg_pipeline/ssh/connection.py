"""SSH to the remote Docker host (fabric over paramiko), and a Docker SDK client that talks through that connection.

* The host is resolved by OpenSSH itself (``ssh -G``, see :mod:`tg_pipeline.ssh.settings`): aliases,
  Include, Match, HostName, Port, User, IdentityFile, CertificateFile, IdentityAgent, known-hosts files,
  ProxyJump, ProxyCommand, ConnectTimeout, ServerAlive*; ``[remote]`` values win.
* Unknown host keys are refused unless ``accept_unknown_host_keys = true`` (or StrictHostKeyChecking
  no / accept-new in the ssh config); fabric alone would accept any key.
* The Docker SDK runs over channels of that same SSH connection (``docker system dial-stdio`` on the
  remote), reused from one small pool, so every API call of a run shares one login, and environment
  values travel as API JSON: no remote shell ever sees them.
* A :class:`~tg_pipeline.ssh.keepalive.Watchdog` finds a silent connection dead within
  ServerAliveInterval x (ServerAliveCountMax + 1) seconds (default 15 s x 4).
* Every failure is one ERROR/TIP paragraph (:mod:`tg_pipeline.ssh.errors`); paramiko's own log lines go to
  the logger ``tg_pipeline.ssh.paramiko``, silent unless ``TG_PIPELINE_DEBUG`` is set.
"""
from __future__ import annotations

import logging
import os
import socket

import docker
import fabric
import paramiko

from tg_pipeline.compat.docker import FIRST_API_VERSION, docker_over_fabric, negotiate
from tg_pipeline.errors import PipelineError, RemoteError
from tg_pipeline.ssh.keepalive import Watchdog
from tg_pipeline.ssh.auth import OpenSSHKeys
from tg_pipeline.ssh.errors import UnknownHostKey, docker_problem, login_error, session_error
from tg_pipeline.ssh.settings import RemoteTarget, SSHSettings, parse_jump, resolve  # noqa: F401 (RemoteTarget: its old home)

LOG_CHANNEL = 'tg_pipeline.ssh.paramiko'
MAX_JUMPS = 8

if not os.environ.get('TG_PIPELINE_DEBUG'):  # with it, paramiko's lines reach the root logger (stderr)
    logging.getLogger(LOG_CHANNEL).addHandler(logging.NullHandler())
    logging.getLogger(LOG_CHANNEL).propagate = False


class _KnownHosts(paramiko.MissingHostKeyPolicy):
    """A key not in known_hosts under the host's name: its HostKeyAlias entry, or accepted when asked to."""

    def __init__(self, settings: SSHSettings, accept: bool):
        self.settings, self.accept = settings, accept

    def missing_host_key(self, client, hostname, key):
        alias = self.settings.host_key_alias
        known = client.get_host_keys().lookup(alias) if alias else None
        if known and key.get_name() in known:
            if known[key.get_name()] != key:
                raise paramiko.BadHostKeyException(hostname, key, known[key.get_name()])
            return
        if not (self.accept or self.settings.accept_new_host_keys):
            raise UnknownHostKey(f'Server {hostname!r} not found in known_hosts')
        client.get_host_keys().add(hostname, key.get_name(), key)


class SSHConnection(fabric.Connection):
    """A fabric Connection built from resolved :class:`SSHSettings` (fabric reads no ssh config itself);
    ``open()`` raises our errors."""
    settings: SSHSettings
    auth: OpenSSHKeys
    watchdog: Watchdog | None
    # declared here: fabric stores undeclared attributes in its config; __init__ gives each its value
    settings = auth = watchdog = None  # type: ignore[assignment]

    def __init__(self, settings: SSHSettings, accept_unknown: bool = False, gateway=None):
        self.settings, self.auth, self.watchdog = settings, OpenSSHKeys(settings), None
        timeout = settings.connect_timeout
        super().__init__(settings.hostname, user=settings.user, port=settings.port,
                         config=fabric.Config(ssh_config=paramiko.SSHConfig(), lazy=True),
                         gateway=gateway if gateway is not None else (settings.proxy_command or False),
                         forward_agent=False, connect_kwargs={'auth_strategy': self.auth, 'timeout': timeout,
                                                              'banner_timeout': timeout, 'auth_timeout': 30})
        self.client.set_log_channel(LOG_CHANNEL)
        for path in settings.known_hosts:
            if os.path.isfile(path):
                self.client.get_host_keys().load(path)
        self.client.set_missing_host_key_policy(_KnownHosts(settings, accept_unknown))

    def open(self):
        if self.is_connected:
            return None
        try:
            result = super().open()
        except PipelineError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the login raised, named for people
            transport = self.client.get_transport()  # (the handshake may time out before the banner does)
            raise login_error(e, self.settings, self.auth, bool(transport and transport.remote_version)) from None
        s = self.settings
        no_delay(self.transport)
        self.watchdog = Watchdog(self.transport, s.alive_interval, s.alive_count, f'{s.hostname} port {s.port}')
        return result

    def open_gateway(self):
        if isinstance(self.gateway, str):  # ProxyCommand: OpenSSH's tokens, with this connection's values
            s = self.settings
            command = self.gateway
            for token, value in (('%%', '\0'), ('%h', s.hostname), ('%p', str(s.port)), ('%r', s.user),
                                 ('%n', s.alias)):
                command = command.replace(token, value)
            return paramiko.ProxyCommand(command.replace('\0', '%'))
        self.gateway.open()
        return super().open_gateway()

    def forward_channel(self, address: str, port: int, origin=('127.0.0.1', 0)):
        """A ``direct-tcpip`` channel to ``address:port`` as the remote sees it."""
        return self.client.get_transport().open_channel('direct-tcpip', (address, port), origin, timeout=10)

    def lost(self) -> str | None:
        """Why the keepalive watchdog closed this connection (None: it did not)."""
        return self.watchdog.reason if self.watchdog is not None else None

    def close(self):
        if self.watchdog is not None:
            self.watchdog.stop()
        super().close()
        if isinstance(self.gateway, SSHConnection):
            self.gateway.close()


def _jumps(settings: SSHSettings, accept_unknown: bool, depth: int = 0):
    """The ProxyJump chain in front of ``settings`` as nested connections (None: direct)."""
    if not settings.proxy_jump or depth > MAX_JUMPS:
        return None
    gateway = None
    for hop in settings.proxy_jump.split(','):
        user, host, port = parse_jump(hop.strip())
        hop_settings = resolve(host, user, port, config_file=settings.config_file)
        if (hop_settings.hostname, hop_settings.port) == (settings.hostname, settings.port):
            return None  # a wildcard Host block that names its own jump host
        inner = gateway if gateway is not None else _jumps(hop_settings, accept_unknown, depth + 1)
        gateway = SSHConnection(hop_settings, accept_unknown, gateway=inner if inner is not None else False)
    return gateway


def no_delay(transport) -> None:
    """Send each write at once (TCP_NODELAY, as OpenSSH does for interactive sessions). Docker's requests go out as
    headers, then body: with Nagle's algorithm every POST with a body (create, load ...) waited for the server's
    delayed ACK, ~40 ms each (measured: create 50 ms, 8 ms without). A gateway's channel or a ProxyCommand's
    pipe is no TCP socket of ours and is left as it is."""
    sock = getattr(transport, 'sock', None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def describe(connection) -> str:
    return f'{connection.user}@{connection.host}:{connection.port}'


def connect(target: RemoteTarget) -> SSHConnection:
    """An open connection to ``target``; every SSH failure is an :class:`SSHError` with the fix."""
    settings = target.settings()
    gateway = _jumps(settings, target.accept_unknown_host_keys)
    connection = SSHConnection(settings, target.accept_unknown_host_keys, gateway)
    try:
        connection.open()
    except BaseException:
        connection.close()
        raise
    return connection


def run(connection, command: str):
    """``connection.run(command)`` (output captured, no stdin); a session the server refuses is named."""
    try:
        return connection.run(command, hide=True, warn=True, in_stream=False)
    except paramiko.SSHException as e:
        error = session_error(e, describe(connection), _lost(connection))
        if error is None:
            raise
        raise error from None


def _lost(connection) -> str | None:
    lost = getattr(connection, 'lost', None)
    return lost() if lost else None


DOCKER_VERSION_COMMAND = "docker version --format '{{.Server.Version}}'"


def remote_docker_version(connection) -> str:
    """Check that the login user may use Docker on the remote; return the engine version."""
    result = run(connection, DOCKER_VERSION_COMMAND)
    if result.exited == 0:
        return result.stdout.strip()
    raise docker_problem(result, connection.user, connection.host, DOCKER_VERSION_COMMAND)


def docker_client(connection, timeout: int = 60) -> docker.DockerClient:
    """A DockerClient for the remote engine, over ``connection``."""
    name = describe(connection)
    client = docker_over_fabric(connection, FIRST_API_VERSION, timeout,
                                       translate=lambda e: session_error(e, name))  # a lost one: see Remote.lost
    try:
        negotiate(client, timeout)
    except PipelineError:
        raise
    except Exception as e:
        remote_docker_version(connection)  # names the usual causes: no docker, no permission, engine down
        raise RemoteError(f'the Docker API of {connection.host} does not answer over SSH: {e}',
                          command='docker system dial-stdio',
                          hint='the remote needs a docker CLI that has `docker system dial-stdio` (Docker 18.09+)') \
            from e
    return client


class Remote:
    """One SSH login and the remote engine behind it; a context manager that closes both."""

    def __init__(self, target: RemoteTarget):
        self.target = target
        self.connection = connect(target)
        self._docker = None

    @property
    def docker(self) -> docker.DockerClient:
        """The remote engine's API over this connection; checks on first use that the login user may use it."""
        if self._docker is None:
            self._docker = docker_client(self.connection)
        return self._docker

    @property
    def name(self) -> str:
        return describe(self.connection)

    def lost(self) -> str | None:
        """Why the connection was found dead (None: it was not)."""
        return _lost(self.connection)

    def close(self):
        if self._docker is not None:
            self._docker.close()
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
