"""SSH to the remote Docker host (fabric), and a Docker SDK client that talks through that connection.

* fabric resolves the host: ``~/.ssh/config`` aliases, HostName, Port, User,
  IdentityFile and ProxyJump; ``[remote]`` values in pipeline.toml win.
* Unknown host keys are refused (paramiko's RejectPolicy) unless
  ``accept_unknown_host_keys = true``; fabric alone would accept any key.
* The Docker SDK runs over a channel of that same SSH connection
  (``docker system dial-stdio`` on the remote), so every API call of a run
  shares one login, and environment values travel as API JSON: no remote
  shell ever sees them.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import docker
import paramiko

from tg_pipeline import compat
from tg_pipeline.errors import HostKeyError, RemoteError, SSHError

DOCKER_API_VERSION = '1.41'  # Docker 20.10+; newer engines still serve it


@dataclass
class RemoteTarget:
    """Where to log in, as configured (empty values: taken from ~/.ssh/config)."""
    host: str
    user: str = ''
    port: int = 0
    identity_file: str = ''
    accept_unknown_host_keys: bool = False
    connect_timeout: float = 15

    @classmethod
    def from_config(cls, remote) -> 'RemoteTarget':
        """From [remote] (RemoteSettings)."""
        from tg_pipeline.errors import ConfigError
        if not remote.host:
            raise ConfigError('no remote host configured', key='remote.host',
                              hint='set host in [remote] of pipeline.toml (a name, an address or a Host alias '
                                   'from ~/.ssh/config), or pass host=... on the command line')
        return cls(host=remote.host, user=remote.user, port=remote.port, identity_file=remote.identity_file,
                   accept_unknown_host_keys=remote.accept_unknown_host_keys, connect_timeout=remote.connect_timeout)


def _fabric_connection(target: RemoteTarget):
    import fabric
    kwargs = {}
    if target.identity_file:
        kwargs['key_filename'] = os.path.expanduser(target.identity_file)
    connection = fabric.Connection(target.host, user=target.user or None, port=target.port or None,
                                   connect_timeout=int(target.connect_timeout), connect_kwargs=kwargs)
    client = connection.client
    client.load_system_host_keys()  # ~/.ssh/known_hosts ($HOME, as paramiko reads it)
    known = connection.ssh_config.get('userknownhostsfile')
    for path in (known.split() if isinstance(known, str) else known or []):
        path = os.path.expanduser(path)
        if os.path.exists(path):
            client.get_host_keys().load(path)
    client.set_missing_host_key_policy(
        paramiko.AutoAddPolicy() if target.accept_unknown_host_keys else paramiko.RejectPolicy())
    return connection


def describe(connection) -> str:
    return f'{connection.user}@{connection.host}:{connection.port}'


def connect(target: RemoteTarget):
    """An open fabric Connection; SSH failures become :class:`SSHError` with the fix."""
    connection = _fabric_connection(target)
    where = describe(connection)
    alias = f' (alias {target.host})' if target.host != connection.host else ''
    try:
        connection.open()
    except paramiko.BadHostKeyException as e:
        raise HostKeyError(
            f'the host key of {connection.host} has CHANGED since it was trusted: refusing to connect to {where}',
            command=f'ssh {where}',
            hint=f'if the host was really reinstalled, remove the old key (ssh-keygen -R {connection.host}) '
                 f'and trust the new one after checking its fingerprint') from e
    except paramiko.SSHException as e:
        if 'not found in known_hosts' in str(e):
            port = f'-p {connection.port} ' if connection.port != 22 else ''
            raise HostKeyError(
                f'the host key of {connection.host}{alias} is unknown: refusing to connect to {where}',
                command=f'ssh {where}',
                hint=f'check the key and trust it: ssh-keyscan {port}{connection.host} >> ~/.ssh/known_hosts '
                     f'(or set accept_unknown_host_keys = true in [remote] to trust any key)') from e
        if isinstance(e, paramiko.AuthenticationException) or 'Authentication failed' in str(e) \
                or 'No authentication methods' in str(e):
            raise SSHError(
                f'SSH login as {connection.user} to {connection.host}{alias} was refused ({e})',
                command=f'ssh {where}',
                hint='check user and identity_file in [remote] (or User/IdentityFile in ~/.ssh/config), and that '
                     'the public key is in ~/.ssh/authorized_keys of that user on the remote') from e
        raise SSHError(f'SSH to {where}{alias} failed: {e}', command=f'ssh {where}') from e
    except (socket.timeout, TimeoutError) as e:
        raise SSHError(f'SSH to {where}{alias} timed out after {target.connect_timeout:g} s',
                       command=f'ssh {where}', hint='check host, port and that the machine is up') from e
    except (OSError, paramiko.ssh_exception.NoValidConnectionsError) as e:
        raise SSHError(f'cannot reach {where}{alias}: {e}', command=f'ssh {where}',
                       hint='check host and port in [remote] (or HostName/Port in ~/.ssh/config)') from e
    return connection


def remote_docker_version(connection) -> str:
    """Check that the login user may use Docker on the remote; return the engine version."""
    command = "docker version --format '{{.Server.Version}}'"
    result = connection.run(command, hide=True, warn=True, in_stream=False)
    if result.exited == 0:
        return result.stdout.strip()
    err = result.stderr + result.stdout
    user, host = connection.user, connection.host
    if 'permission denied' in err.lower():
        raise RemoteError(
            f'user {user} may not use Docker on {host}: permission denied on the Docker socket',
            command=command, exit_code=result.exited, output=err,
            hint=f'on {host}, add {user} to the group that owns the socket: sudo usermod -aG docker {user} '
                 f'(then log in again)')
    if result.exited == 127 or 'not found' in err:
        raise RemoteError(f'the docker command is not installed on {host}', command=command,
                          exit_code=result.exited, output=err,
                          hint=f'install Docker on {host} (Debian: apt-get install docker.io)')
    raise RemoteError(f'Docker does not answer on {host}', command=command, exit_code=result.exited, output=err,
                      hint=f'start the Docker engine on {host} (or set DOCKER_HOST for {user} there)')


def docker_client(connection, timeout: int = 60) -> docker.DockerClient:
    """A DockerClient for the remote engine, over ``connection``."""
    client = compat.docker_over_fabric(connection, DOCKER_API_VERSION, timeout)
    try:
        client.ping()
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

    def close(self):
        if self._docker is not None:
            self._docker.close()
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
