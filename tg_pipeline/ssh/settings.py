"""The SSH settings of a host as OpenSSH itself resolves them: ``ssh -G HOST``.

``ssh -G`` prints what ``ssh HOST`` would use after reading the configuration the way only OpenSSH reads it
(``Include``, ``Match``, canonicalisation, ``%`` tokens, the config of the passwd home, not ``$HOME``).
:func:`resolve` turns that into :class:`SSHSettings`: host name, port, user, identity and certificate
files, the agent, known-hosts files, ProxyJump / ProxyCommand, ServerAlive*, ConnectTimeout,
StrictHostKeyChecking and HostKeyAlias. The ``[remote]`` user, port and identity file win over it.

Only where no ``ssh`` program is installed, paramiko's own reader (what fabric uses) stands in: it reads
``~/.ssh/config`` and ``/etc/ssh/ssh_config`` but knows no ``Include`` or ``Match exec``.
"""
from __future__ import annotations

import getpass
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass

from tg_pipeline.errors import ConfigError, SSHError

DEFAULT_ALIVE_INTERVAL = 15  # seconds, when the ssh config sets no ServerAliveInterval
DEFAULT_CONNECT_TIMEOUT = 15
DEFAULT_IDENTITIES = ('id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_dsa')


@dataclass(frozen=True)
class SSHSettings:
    alias: str  # the host as asked for: a Host alias, a name or an address
    hostname: str
    port: int
    user: str
    identity_files: tuple = ()
    certificate_files: tuple = ()
    identities_only: bool = False
    identity_agent: str = ''  # '' = $SSH_AUTH_SOCK, 'none', or a socket path
    known_hosts: tuple = ()  # user files, then global ones
    proxy_jump: str = ''
    proxy_command: str = ''
    alive_interval: float = DEFAULT_ALIVE_INTERVAL
    alive_count: int = 3
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    accept_new_host_keys: bool = False  # StrictHostKeyChecking no / accept-new
    host_key_alias: str = ''
    config_file: str = ''  # ssh -F FILE, '' for OpenSSH's own files
    control_master: str = ''  # the ssh config's own ControlMaster ('' = none): then its ControlPath is used as it is

    @property
    def command(self) -> str:
        """The ssh command line that reaches the same host, for people to paste."""
        config = f'-F {shlex.quote(self.config_file)} ' if self.config_file else ''
        return f'ssh {config}-p {self.port} {shlex.quote(self.user)}@{shlex.quote(self.alias)}'

    @property
    def known_hosts_name(self) -> str:
        """How the host is named in known_hosts: ``host``, or ``[host]:port`` off port 22."""
        name = self.host_key_alias or self.hostname
        return name if self.port == 22 or self.host_key_alias else f'[{name}]:{self.port}'

    def describe_config(self) -> str:
        return self.config_file or '~/.ssh/config'


@dataclass
class RemoteTarget:
    """Where to log in, as configured (empty values: as OpenSSH resolves the host), and how: the ssh program with
    one shared connection per host and ``project`` kept ``control_persist`` seconds, or paramiko
    (``ssh_client``, see :mod:`tg_pipeline.ssh.transport`)."""
    host: str
    user: str = ''
    port: int = 0
    identity_file: str = ''
    accept_unknown_host_keys: bool = False
    connect_timeout: float = 0  # 0: ConnectTimeout of the ssh config, else 15 s
    ssh_config: str = ''  # an ssh_config file instead of OpenSSH's own (ssh -F)
    ssh_client: str = 'auto'  # auto | openssh | paramiko
    control_persist: float = 300
    project: str = ''  # the project id: two projects never share a connection

    @classmethod
    def from_config(cls, remote, project: str = '') -> 'RemoteTarget':
        """From [remote] (RemoteSettings) and the project id."""
        if not remote.host:
            raise ConfigError('no remote host configured', key='remote.host',
                              hint='set host in [remote] of pipeline.toml (a name, an address or a Host alias '
                                   'from ~/.ssh/config), or pass host=... on the command line')
        return cls(host=remote.host, user=remote.user, port=remote.port, identity_file=remote.identity_file,
                   accept_unknown_host_keys=remote.accept_unknown_host_keys, connect_timeout=remote.connect_timeout,
                   ssh_config=remote.ssh_config, ssh_client=getattr(remote, 'ssh_client', 'auto'),
                   control_persist=getattr(remote, 'control_persist', 300), project=project)

    def settings(self) -> SSHSettings:
        return resolve(self.host, self.user, self.port, self.identity_file, self.ssh_config, self.connect_timeout)


def parse_destination(text: str) -> tuple[str, str, int]:
    """(user, host, port) of ``host``, ``user@host`` or ``ssh://[user@]host[:port]`` (empty/0: not given); the
    form is [remote] host's own check (:func:`tg_pipeline.config.values.split_destination`)."""
    from tg_pipeline.config.values import DESTINATION_HINT, split_destination
    try:
        return split_destination(text)
    except ValueError as e:
        raise ConfigError(str(e), key='remote.host', hint=DESTINATION_HINT) from None


def resolve(host: str, user: str = '', port: int = 0, identity_file: str = '', config_file: str = '',
            connect_timeout: float = 0) -> SSHSettings:
    """The settings ``ssh`` would use for ``host``; ``user``, ``port``, ``identity_file`` and
    ``connect_timeout`` (when given) win."""
    d_user, alias, d_port = parse_destination(host)
    user, port = user or d_user, port or d_port
    if config_file:
        config_file = os.path.abspath(os.path.expanduser(config_file))
        if not os.path.isfile(config_file):
            raise ConfigError(f'the SSH config file {config_file} does not exist', key='remote.ssh_config',
                              hint='give the path of an ssh_config file, or leave ssh_config empty for '
                                   '~/.ssh/config')
    ssh = shutil.which('ssh')
    values = _ask_openssh(ssh, alias, user, port, config_file) if ssh else _ask_paramiko(alias, user, port,
                                                                                         config_file)
    settings = _settings(alias, values, config_file)
    extra = _expand(identity_file, settings) if identity_file else ''
    files = tuple(dict.fromkeys(([extra] if extra else []) + list(settings.identity_files)))
    timeout = connect_timeout or settings.connect_timeout
    return _replace(settings, identity_files=files, connect_timeout=timeout)


def _replace(settings: SSHSettings, **changes) -> SSHSettings:
    import dataclasses
    return dataclasses.replace(settings, **changes)


def _ask_openssh(ssh: str, alias: str, user: str, port: int, config_file: str) -> dict[str, list[str]]:
    command = [ssh, *(['-F', config_file] if config_file else []), '-G', *(['-l', user] if user else []),
               *(['-p', str(port)] if port else []), alias]
    shown = ' '.join(shlex.quote(c) for c in ['ssh', *command[1:]])
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SSHError(f'OpenSSH could not resolve the SSH settings of {alias}: {e}', command=shown) from None
    if done.returncode != 0:
        lines = [l for l in done.stderr.splitlines() if l.strip() and 'Pseudo-terminal' not in l]
        raise SSHError(f'OpenSSH cannot resolve the SSH settings of {alias}: '
                       + ('; '.join(lines[-3:]) or f'ssh -G exited {done.returncode}'),
                       hint=f'fix what it names in {config_file or "~/.ssh/config (or a file it includes)"}, '
                            f'then check with: {shown}')
    values: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(' ')
        values.setdefault(key.lower(), []).append(value.strip())
    return values


def _ask_paramiko(alias: str, user: str, port: int, config_file: str) -> dict[str, list[str]]:
    """The same keys ``ssh -G`` prints, from paramiko's reader (no Include, no Match exec)."""
    import paramiko
    paths = [config_file] if config_file else [os.path.join(home(), '.ssh', 'config'), '/etc/ssh/ssh_config']
    found = {}
    for path in reversed([p for p in paths if os.path.isfile(p)]):  # the first file's values win
        found.update(paramiko.SSHConfig.from_path(path).lookup(alias))
    values = {k: (v if isinstance(v, list) else [str(v)]) for k, v in found.items()}
    values['hostname'] = [values.get('hostname', [alias])[0]]
    values['user'] = [user or values.get('user', [getpass.getuser()])[0]]
    values['port'] = [str(port or values.get('port', ['22'])[0])]
    values.setdefault('identityfile', [f'~/.ssh/{name}' for name in DEFAULT_IDENTITIES])
    values.setdefault('userknownhostsfile', ['~/.ssh/known_hosts ~/.ssh/known_hosts2'])
    return values


def _settings(alias: str, values: dict[str, list[str]], config_file: str) -> SSHSettings:
    def one(key, default=''):
        return (values.get(key) or [default])[0]

    def number(key, default):
        text = one(key, 'none')
        return float(text) if re.fullmatch(r'\d+(\.\d+)?', text) else default
    hostname = one('hostname', alias)
    if hostname.startswith('[') and hostname.endswith(']'):
        hostname = hostname[1:-1]
    settings = SSHSettings(
        alias=alias, hostname=hostname, port=int(one('port', '22')), user=one('user', getpass.getuser()),
        identities_only=one('identitiesonly', 'no').lower() in ('yes', 'true'),
        proxy_jump='' if one('proxyjump', 'none') == 'none' else one('proxyjump'),
        proxy_command='' if one('proxycommand', 'none') == 'none' else one('proxycommand'),
        alive_interval=number('serveraliveinterval', 0), alive_count=int(number('serveralivecountmax', 3)),
        connect_timeout=number('connecttimeout', 0),
        accept_new_host_keys=one('stricthostkeychecking', 'ask').lower() in ('no', 'false', 'off', 'accept-new'),
        host_key_alias='' if one('hostkeyalias', 'none') == 'none' else one('hostkeyalias'),
        config_file=config_file,
        control_master='' if one('controlmaster', 'false').lower() in ('false', 'no') else one('controlmaster'))
    agent = one('identityagent', 'SSH_AUTH_SOCK')
    if agent.startswith('$'):
        agent = os.environ.get(agent.lstrip('${').rstrip('}'), '') or 'none'
    known = (one('userknownhostsfile') + ' ' + one('globalknownhostsfile', '/etc/ssh/ssh_known_hosts')).split()
    return _replace(
        settings, identity_agent='' if agent == 'SSH_AUTH_SOCK' else _expand(agent, settings),
        identity_files=tuple(_expand(p, settings) for p in values.get('identityfile', [])),
        certificate_files=tuple(_expand(p, settings) for p in values.get('certificatefile', [])),
        known_hosts=tuple(dict.fromkeys(_expand(p, settings) for p in known)),
        alive_interval=settings.alive_interval or DEFAULT_ALIVE_INTERVAL,
        connect_timeout=settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT)


def home() -> str:
    """The home directory OpenSSH uses: the passwd entry's, not $HOME."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return os.path.expanduser('~')


def _expand(text: str, s: SSHSettings) -> str:
    """OpenSSH's ``~``, ``${VAR}`` and ``%`` tokens of a path (what ``ssh -G`` leaves unexpanded)."""
    if text == 'none':
        return text
    tokens = {'%': '%', 'd': home(), 'h': s.hostname, 'p': str(s.port), 'r': s.user, 'n': s.alias,
              'u': getpass.getuser(), 'i': str(os.getuid()), 'L': socket.gethostname().split('.')[0],
              'l': socket.gethostname(), 'k': s.host_key_alias or s.hostname, 'j': s.proxy_jump}
    text = re.sub(r'%(.)', lambda m: tokens.get(m.group(1), m.group(0)), text)
    text = re.sub(r'\$\{(\w+)\}', lambda m: os.environ.get(m.group(1), ''), text)
    if text == '~' or text.startswith('~/'):
        text = home() + text[1:]
    return os.path.expanduser(text)


def parse_jump(hop: str) -> tuple[str, str, int]:
    """(user, host, port) of one ProxyJump hop: ``[user@]host[:port]`` or an ``ssh://`` address."""
    if hop.startswith('ssh://'):
        return parse_destination(hop)
    user, _, hostport = hop.rpartition('@')
    if hostport.startswith('['):
        host, _, port = hostport[1:].partition(']')
        port = port.lstrip(':')
    else:
        host, _, port = hostport.rpartition(':') if hostport.count(':') == 1 else (hostport, '', '')
    return user, host, int(port) if port.isdigit() else 0
