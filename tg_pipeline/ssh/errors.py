"""What went wrong with SSH, named: each failure of a login or of a session becomes one ERROR/TIP paragraph
whose TIP command works when pasted (``ssh -p PORT user@host``, never ``user@host:22``).

:func:`login_error` maps what opening a paramiko connection raised (DNS, refused, timeout, no SSH banner, unknown
or changed host key, refused login, a failing ProxyCommand); :func:`openssh_error` maps the same cases from what
the ssh program printed; :func:`session_error` maps a session the server refused (its ``MaxSessions`` limit) and a
connection the keepalive watchdog found dead. paramiko is imported only where its exceptions are looked at.
"""
from __future__ import annotations

import os
import re
import shlex
import socket

from tg_pipeline.errors import HostKeyError, RemoteError, SSHError


def _unknown_host_key_class():
    """The exception class, made once on first use: this module imports no paramiko for the ssh program."""
    if 'UnknownHostKey' not in globals():
        import paramiko

        class UnknownHostKey(paramiko.SSHException):
            """The server's key is in none of the known-hosts files (and unknown keys are not accepted)."""
        globals()['UnknownHostKey'] = UnknownHostKey
    return globals()['UnknownHostKey']


def __getattr__(name):
    if name == 'UnknownHostKey':
        return _unknown_host_key_class()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def shown_path(path: str) -> str:
    """``path`` as a shell command should name it: under $HOME as ``~/...`` (the shell expands it)."""
    home = os.path.expanduser('~')
    return '~' + path[len(home):] if path.startswith(home + os.sep) else shlex.quote(path)


def _names(s) -> tuple[str, str]:
    alias = f' (alias {s.alias})' if s.alias != s.hostname else ''
    return f'{s.hostname} port {s.port}', alias


def login_error(e: BaseException, s, auth=None, banner: bool = False) -> SSHError:
    """The error for exception ``e`` raised while logging in with settings ``s`` (``auth``: the OpenSSHKeys;
    ``banner``: whether the server had sent its SSH banner)."""
    import paramiko
    where, alias = _names(s)
    if isinstance(e, paramiko.BadHostKeyException):
        return _changed_key(s, alias)
    if isinstance(e, _unknown_host_key_class()):
        return _unknown_key(s, alias)
    if isinstance(e, paramiko.AuthenticationException):
        return _refused(s, alias, auth)
    if isinstance(e, paramiko.ProxyCommandFailure):
        return SSHError(f'the ProxyCommand that reaches {s.alias} failed: {e}',
                        hint=f'run ssh with the same settings to see why: {s.command}')
    if isinstance(e, socket.gaierror):
        return SSHError(f'the host name {s.hostname}{alias} does not resolve ({e.strerror or e})',
                        hint=f'check the name (host in [remote], or HostName in {s.describe_config()}); '
                             f'try: {s.command}')
    refused = isinstance(e, ConnectionRefusedError) or (
        isinstance(e, paramiko.ssh_exception.NoValidConnectionsError)
        and all(isinstance(x, ConnectionRefusedError) for x in e.errors.values()))
    if refused:
        return SSHError(f'nothing accepts SSH connections on {where}{alias} (connection refused)',
                        hint=f'check the port (port in [remote], or Port in {s.describe_config()}) and that sshd '
                             f'runs there; try: {s.command}')
    if isinstance(e, (socket.timeout, TimeoutError)):
        return SSHError(f'{where}{alias} did not answer within {s.connect_timeout:g} s (connection timed out)',
                        hint=f'check that the machine is up and that no firewall drops SSH from here (or raise '
                             f'connect_timeout in [remote]); try: {s.command}')
    text = str(e)
    if 'protocol banner' in text or (text == 'No existing session' and not banner):
        return _no_banner(s, where, alias, text)
    if text == 'No existing session':
        return SSHError(f'{where}{alias} did not finish the SSH handshake within {s.connect_timeout:g} s',
                        hint=f'the server or the link is very slow: raise connect_timeout in [remote]; try: {s.command}')
    if isinstance(e, (EOFError, ConnectionResetError)) or 'reset by peer' in text:
        return _closed_early(s, where, alias)
    if isinstance(e, OSError):
        why = '; '.join(x.strerror or str(x) for x in getattr(e, 'errors', {}).values()) or e.strerror or str(e)
        return SSHError(f'cannot reach {where}{alias}: {why}',
                        hint=f'check the address and the network route to it; try: {s.command}')
    return SSHError(f'SSH to {where}{alias} failed: {type(e).__name__}: {e}', hint=f'try: {s.command}')


def _no_banner(s, where: str, alias: str, text: str) -> SSHError:
    if 'timed out' in text or 'Timeout' in text or text.endswith('banner') or text == 'No existing session':
        return SSHError(f'{where}{alias} accepts TCP connections but sent no SSH banner within '
                        f'{s.connect_timeout:g} s: no SSH server answers on that port',
                        hint=f'check the port (port in [remote], or Port in {s.describe_config()}): another '
                             f'service listens there, or sshd is stuck; try: {s.command}')
    return _closed_early(s, where, alias)


def _closed_early(s, where: str, alias: str) -> SSHError:
    return SSHError(f'{where}{alias} closed the connection before the SSH handshake',
                    hint='sshd drops new connections while too many logins are pending (its MaxStartups) or '
                         f'when it does not allow this address; try again in a moment, or see why: {s.command}')


def _unknown_key(s, alias: str) -> HostKeyError:
    files = [p for p in s.known_hosts if not p.startswith('/etc/')] or [os.path.expanduser('~/.ssh/known_hosts')]
    port = f'-p {s.port} ' if s.port != 22 else ''
    return HostKeyError(
        f'the host key of {s.hostname}{alias} is unknown: refusing to connect to {s.user}@{s.hostname} '
        f'port {s.port}',
        hint=f'check the key and trust it: ssh-keyscan {port}{s.hostname} >> {shown_path(files[0])} (or set '
             f'accept_unknown_host_keys = true in [remote] to trust any key)')


def _changed_key(s, alias: str) -> HostKeyError:
    files = [p for p in s.known_hosts if os.path.exists(p)] or [os.path.expanduser('~/.ssh/known_hosts')]
    name, port = shlex.quote(s.known_hosts_name), f'-p {s.port} ' if s.port != 22 else ''
    known = shown_path(files[0])
    return HostKeyError(
        f'the host key of {s.hostname}{alias} has CHANGED since it was trusted: refusing to connect to '
        f'{s.user}@{s.hostname} port {s.port}',
        hint=f'if the host was really reinstalled, remove the old key: ssh-keygen -f {known} -R {name}; then '
             f'check the new key\'s fingerprint and trust it: ssh-keyscan {port}{s.hostname} >> {known}')


def _refused(s, alias: str, auth) -> SSHError:
    offered = '; '.join(auth.offered) if auth is not None and auth.offered else 'no key'
    unusable = ('; could not use: ' + '; '.join(auth.unusable)) if auth is not None and auth.unusable else ''
    return SSHError(
        f'SSH login as {s.user} to {s.hostname}{alias} was refused (offered: {offered}{unusable})',
        hint='check user and identity_file in [remote] (or User/IdentityFile in '
             f'{s.describe_config()}), and that the public key is in ~/.ssh/authorized_keys of that user on the '
             f'remote; try: {s.command}')


def session_error(e: BaseException, name: str, reason: str | None = None) -> SSHError | None:
    """The error for a session that could not be opened on an open connection (None: not ours to name)."""
    import paramiko
    if reason:
        return SSHError(f'the SSH connection to {name} was lost: {reason}',
                        hint='check the network to that host; what runs there goes on (see it with doit status '
                             'where=remote)')
    if isinstance(e, paramiko.ChannelException) and e.code == paramiko.OPEN_FAILED_CONNECT_FAILED:
        return max_sessions(name, e.text)
    return None


def max_sessions(name: str, text: str) -> SSHError:
    return SSHError(f'the SSH server of {name} refused to open another session on this connection '
                    f'({text}): its MaxSessions limit is reached',
                    hint='its sshd allows MaxSessions sessions per connection (OpenSSH\'s default: 10) and '
                         'tg_pipeline uses up to 4 at once: on the remote, set MaxSessions 10 (or more) in '
                         '/etc/ssh/sshd_config, then: sudo systemctl reload ssh')


# --- the ssh program's own words (stderr, or its -E log) -----------------------------------------------------
_NOISE = re.compile(r'^(Warning: Permanently added|Pseudo-terminal|debug\d?:|Authenticated to|Transferred:|'
                    r'Bytes per second:|Control socket|ControlSocket|mux_client_|Shared connection to .* closed)')


def ssh_lines(text: str) -> list[str]:
    """What the ssh program said that matters (its notes and the mux client's chatter left out)."""
    return [line.strip() for line in text.replace('\r', '').splitlines() if line.strip() and not _NOISE.match(line.strip())]


def openssh_error(text: str, s, code: int = 255) -> SSHError:
    """The error for a login (or a channel) that the ssh program (settings ``s``) gave up with ``code`` after
    printing ``text``."""
    where, alias = _names(s)
    lines = ssh_lines(text)
    said = '; '.join(lines[-3:]) or f'ssh exited {code}'
    low = text.lower()
    if 'remote host identification has changed' in low or 'host key for' in low and 'has changed' in low:
        return _changed_key(s, alias)
    if 'host key verification failed' in low:
        return _unknown_key(s, alias)
    if 'could not resolve hostname' in low:
        return SSHError(f'the host name {s.hostname}{alias} does not resolve ({said})',
                        hint=f'check the name (host in [remote], or HostName in {s.describe_config()}); try: {s.command}')
    if 'permission denied (' in low or 'too many authentication failures' in low:
        return SSHError(f'SSH login as {s.user} to {s.hostname}{alias} was refused ({said})',
                        hint='check user and identity_file in [remote] (or User/IdentityFile in '
                             f'{s.describe_config()}), and that the public key is in ~/.ssh/authorized_keys of that '
                             f'user on the remote (a key with a passphrase must be in your ssh-agent); try: {s.command}')
    if 'connection refused' in low and 'channel' not in low:
        return SSHError(f'nothing accepts SSH connections on {where}{alias} (connection refused)',
                        hint=f'check the port (port in [remote], or Port in {s.describe_config()}) and that sshd '
                             f'runs there; try: {s.command}')
    if 'banner exchange' in low and 'timed out' in low:
        return _no_banner(s, where, alias, 'timed out')
    if 'timed out' in low:
        return SSHError(f'{where}{alias} did not answer within {s.connect_timeout:g} s (connection timed out)',
                        hint=f'check that the machine is up and that no firewall drops SSH from here (or raise '
                             f'connect_timeout in [remote]); try: {s.command}')
    if 'kex_exchange_identification' in low or 'connection reset' in low:
        return _closed_early(s, where, alias)
    if 'session open refused' in low or 'administratively prohibited' in low:
        return max_sessions(f'{s.user}@{s.hostname}:{s.port}', said)
    if 'no route to host' in low or 'network is unreachable' in low:
        return SSHError(f'cannot reach {where}{alias}: {said}',
                        hint=f'check the address and the network route to it; try: {s.command}')
    return SSHError(f'SSH to {where}{alias} failed: {said}', hint=f'try: {s.command}')


def docker_problem(result, user: str, host: str, command: str) -> RemoteError:
    """Why ``command`` (``docker version`` as ``user`` on ``host``) failed, from its ``result`` (exited, stdout,
    stderr): no docker, no permission on the socket, no engine."""
    err = result.stderr + result.stdout
    if 'permission denied' in err.lower():
        return RemoteError(
            f'user {user} may not use Docker on {host}: permission denied on the Docker socket',
            command=command, exit_code=result.exited, output=err,
            hint=f'on {host}, add {user} to the group that owns the socket: sudo usermod -aG docker {user} '
                 f'(then log in again)')
    if result.exited == 127 or 'not found' in err:
        return RemoteError(f'the docker command is not installed on {host}', command=command,
                           exit_code=result.exited, output=err,
                           hint=f'install Docker on {host} (Debian: apt-get install docker.io)')
    return RemoteError(f'Docker does not answer on {host}', command=command, exit_code=result.exited, output=err,
                       hint=f'start the Docker engine on {host} (or set DOCKER_HOST for {user} there)')
