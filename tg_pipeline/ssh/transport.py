"""How this process reaches a remote host, decided here: the ssh program with one shared connection per host and
project (:mod:`.openssh`: no login and no paramiko import on every command), or a login of paramiko's own
(:mod:`.connection`) where no ssh program can share connections (Windows, or none installed). ``ssh_client`` in
[remote] (env ``TG_PIPELINE_SSH_CLIENT``) may name one; ``doit config`` shows which one is used, and why.
"""
from __future__ import annotations

import os
import shutil
import socket

from tg_pipeline.ssh.settings import RemoteTarget


def openssh_shares() -> bool:
    """Whether an ssh program here can share connections (ControlMaster needs Unix sockets: not on Windows)."""
    return os.name != 'nt' and hasattr(socket, 'AF_UNIX') and shutil.which('ssh') is not None


def client_of(wanted: str) -> str:
    """``openssh`` or ``paramiko`` for the setting ``wanted`` (auto, openssh, paramiko)."""
    if wanted in ('openssh', 'paramiko'):
        return wanted
    return 'openssh' if openssh_shares() else 'paramiko'


def open_remote(target: RemoteTarget):
    """The remote engine behind ``target``, logged in (or on the shared connection already there)."""
    if client_of(target.ssh_client) == 'openssh':
        from tg_pipeline.ssh.openssh import SharedRemote
        return SharedRemote(target)
    from tg_pipeline.ssh.connection import Remote
    return Remote(target)


def describe(remote) -> str:
    """The comment ``doit config`` prints under [remote]: which SSH client, and where its connections live."""
    used = client_of(remote.ssh_client)
    why = 'as set' if remote.ssh_client != 'auto' else 'chosen automatically'
    if used == 'paramiko':
        reason = '' if remote.ssh_client != 'auto' else ': no ssh program here can share connections'
        return f'# SSH client used: paramiko ({why}{reason}); one login per command'
    from tg_pipeline.ssh.openssh import control_dir
    persist = (f'kept {remote.control_persist:g} s after its last use' if remote.control_persist > 0
               else 'closed at the end of each command')
    return (f'# SSH client used: openssh ({why}): one shared connection per host and project, {persist}; '
            f'control sockets in {control_dir()} (unless your ssh config sets ControlMaster)')
