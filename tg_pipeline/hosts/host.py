"""Where runs happen: a :class:`Host` (the local engine, an engine over SSH, or a swarm manager), chosen in
ONE place (:func:`open_host`) from the configuration and ``where=``; and the run backend for it.

A Host owns its Docker client and its SSH connection (closed together) and knows its kind and its name
for people (``local``, ``remote user@host:22``, ``swarm local``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

from tg_pipeline.compat.docker import docker
from tg_pipeline.errors import ConfigError, DockerUnavailable, PipelineError, RemoteError


from tg_pipeline.hosts.engine import local_engine
from tg_pipeline.errors import SwarmError

WHERE = ('local', 'remote', 'swarm')


@dataclass
class Host:
    where: str  # local | remote | swarm: also the folder under build/JOB/runs/
    name: str
    docker: Any  # a docker-py client (None while an SSH host's is being made)
    remote: bool = False  # the engine is reached over SSH
    connection: Any = None  # the SSH connection (fabric's), if any
    nodes: list = field(default_factory=list)  # other engines of the swarm that we reach (leftovers)
    _closers: list = field(default_factory=list)
    lost: Callable[[], str | None] | None = None  # () -> why the SSH connection was found dead, or None
    deferring: bool = False  # closed by open_host, which waits for deferred work (else it is done at once)
    gone: bool = False  # its SSH connection was found lost (said_as_lost)

    def lost_reason(self) -> str | None:
        return self.lost() if self.lost is not None else None

    @property
    def kind(self) -> str:
        return 'swarm' if self.where == 'swarm' else 'ssh' if self.remote else 'local'

    def defer(self, work) -> None:
        """Do ``work()`` in a thread now; closing the host waits for it (e.g. the engine removing a container while
        the run's result is shown)."""
        if not self.deferring:
            work()
            return
        import sys
        import threading

        def guarded():
            try:
                work()
            except Exception as e:  # noqa: BLE001 - said, not raised: the run itself went as it went
                print(f'note: {self.name}: {type(e).__name__}: {e} (doit cleanup where={self.where} tidies up)',
                      file=sys.stderr, flush=True)
        thread = threading.Thread(target=guarded, name='tg-pipeline-deferred', daemon=True)
        thread.start()
        self._closers.append(thread.join)  # closed first

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


def check_where(where: str) -> str:
    if where not in WHERE:
        raise ConfigError(f'where={where} is not local, remote or swarm', key='where',
                          hint='where=local (the default), where=remote or where=swarm')
    return where


@contextlib.contextmanager
def open_host(config, where: str = 'local'):
    """The Host ``where`` names, for this configuration; closed on exit."""
    check_where(where)
    host = _swarm_host(config) if where == 'swarm' else _local_host() if where == 'local' else _ssh_host(config)
    host.deferring = True
    try:
        with said_as_lost(host):
            yield host
    finally:
        host.close()


@contextlib.contextmanager
def said_as_lost(host: Host):
    """Around work on ``host``: an error that its SSH connection broke is said as that (one RemoteError), and the
    host is marked ``gone`` (:class:`Hosts` opens it again for the next step)."""
    try:
        yield host
    except Exception as e:
        reason = None if isinstance(e, PipelineError) else host.lost_reason()  # ours say what happened already
        if reason is None:
            raise
        host.gone = True
        raise RemoteError(f'the SSH connection to {host.name} was lost: {reason}',
                          hint='check the network to that host; whatever runs there goes on: see it with '
                               f'doit status where={host.where}') from None


class Hosts:
    """The hosts one command's steps share (``doit status where=remote`` over every job: one connection, one
    first request), each opened by :func:`open_host` when a step first asks for it, opened again after its
    connection was lost, and all closed by :meth:`close` (at the end of the command)."""

    def __init__(self, config):
        self.config = config
        self._open: dict[str, tuple[contextlib.ExitStack, Host]] = {}

    def get(self, where: str) -> Host:
        found = self._open.get(where)
        if found is not None and not found[1].gone:
            return found[1]
        if found is not None:
            self._open.pop(where)[0].close()
        stack = contextlib.ExitStack()
        host = stack.enter_context(open_host(self.config, where))
        self._open[where] = (stack, host)
        return host

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1][0].close()


def _local_host() -> Host:
    return Host('local', 'local', local_engine())


def _remote(config):
    """The [remote] login: the one :func:`tg_pipeline.ssh.early.connect_early` started, or a new one."""
    from tg_pipeline.ssh import early as early_ssh
    from tg_pipeline.ssh.settings import RemoteTarget
    from tg_pipeline.ssh.transport import open_remote
    early = early_ssh.take(config)
    return early if early is not None else open_remote(RemoteTarget.from_config(config.remote, getattr(config, 'project', '')))


def _ssh_host(config) -> Host:
    remote = _remote(config)
    host = Host('remote', f'remote {remote.name}', None, remote=True, connection=remote.connection,
                lost=remote.lost)
    host._closers.append(remote.close)
    try:
        host.docker = remote.docker
    except BaseException:
        host.close()
        raise
    return host


def _swarm_host(config) -> Host:
    """The swarm manager: this engine, or the [remote] one (a head node; this machine need be no node then).
    The other engine, when we reach it and it is a node of that swarm, is kept in ``nodes`` (Docker 20.10
    leaves task containers there: moby#44312)."""
    if config.swarm.manager == 'remote' and not config.remote.host:
        raise ConfigError('[swarm] manager = "remote" names the [remote] host as the swarm manager, and [remote] '
                          'has no host', key='swarm.manager',
                          hint='set host in [remote] to the head node (e.g. host = "user@head-node", or an ssh alias; '
                               'host=... on the command line), or manager=local when this machine is the manager')
    if not config.remote.host:
        return Host('swarm', 'swarm local', local_engine())
    ssh = _ssh_host(config)
    if config.swarm.manager == 'local':
        host = Host('swarm', 'swarm local', local_engine(), nodes=[ssh.docker])
    else:
        host = Host('swarm', f'swarm {ssh.name.split(" ", 1)[1]}', ssh.docker, remote=True,
                    connection=ssh.connection, nodes=_optional_local_engine(), lost=ssh.lost)
    host._closers.append(ssh.close)
    try:
        manager_nodes = {n.id for n in host.docker.nodes.list()}
    except docker.errors.APIError as e:
        host.close()
        raise not_a_manager(host.name, e) from None
    host.nodes = [e for e in host.nodes if e.info().get('Swarm', {}).get('NodeID') in manager_nodes]
    return host


def _optional_local_engine() -> list:
    """This machine's engine, when one answers: with a remote manager it may be no node at all."""
    try:
        return [local_engine()]
    except DockerUnavailable:
        return []


def not_a_manager(host: str, error) -> SwarmError:
    return SwarmError(f'the Docker engine of {host} is not a swarm manager: {error.explanation or error}',
                      hint='docker swarm init (there), or point [swarm] manager at a manager: manager=local (this '
                           'machine) or manager=remote with host= the head node')
