"""The test target: the one place that says which remote host, registry and engines the integration tier and the
benchmark run against (``from target import TARGET``; the bench imports it too).

Each value comes from an environment variable (:data:`VARIABLES`, documented in CONTRIBUTING.md); its default is
what ``scripts/setup_remote.sh``, ``setup_swarm.sh`` and ``setup_swarm_remote.sh`` set up on this machine. What
tests assert on about the destination (its host name, user, port, key, known_hosts files) is never written here:
:meth:`Target.login` asks OpenSSH (``ssh -G DEST``, which reads the ~/.ssh/config of the passwd home).

The fixture projects under ``tests/projects/`` name no host: their ``[remote]``/``[registry]`` tables hold
:data:`PLACEHOLDERS` (empty values, valid as they are), which :func:`fill` replaces with the target's when a
project is copied (``conftest.copy_project``, the bench's copy).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

STATE = Path(os.environ.get('TG_PIPELINE_STATE', '/var/lib/tg-pipeline-test'))

# field: (environment variable, default: this machine's simulated hosts, what it is)
VARIABLES = {
    'remote': ('TG_TEST_REMOTE', 'tg-remote',
               'the SSH destination of the test remote: a Host alias of ~/.ssh/config, user@host or ssh://...'),
    'registry': ('TG_TEST_REGISTRY', '127.0.0.1:5000',
                 'the registry images are pushed to; this machine and the remote both reach it under this address'),
    'remote_docker': ('TG_TEST_REMOTE_DOCKER', 'unix:///run/tg-remote/docker.sock',
                      "the remote engine as reachable from here, for the tests' own checks ('': none)"),
    'nodocker_user': ('TG_TEST_NODOCKER_USER', 'tgnodocker',
                      "a user of the remote who logs in with the same key and may not use Docker ('': none)"),
    'unknown_user': ('TG_TEST_UNKNOWN_USER', 'nosuchuser', 'a user name the remote does not know'),
    'login_registry': ('TG_TEST_LOGIN_REGISTRY', '127.0.0.1:5001',
                       "a registry that wants a login ('': none) ..."),
    'login_registry_user': ('TG_TEST_LOGIN_REGISTRY_USER', 'tguser', '... its user ...'),
    'login_registry_password': ('TG_TEST_LOGIN_REGISTRY_PASSWORD_FILE', str(STATE / 'registry' / 'auth' / 'password'),
                                '... and a file holding its password'),
    'netns': ('TG_TEST_REMOTE_NETNS', 'tgremote',
              "the network namespace of this machine the remote lives in ('': elsewhere): tests that start a "
              'second sshd there'),
    'link': ('TG_TEST_LINK', 'tgr-host',
             "this machine's network interface towards the remote ('': none): tests that cut or count its traffic"),
    'swarm_head': ('TG_TEST_SWARM_HEAD', 'tg-head',
                   'the SSH destination of the head (manager) node of a swarm this machine is no node of'),
    'swarm_head_docker': ('TG_TEST_SWARM_HEAD_DOCKER', 'unix:///run/tg-head/docker.sock',
                          "that head's engine as reachable from here ..."),
    'swarm_worker_docker': ('TG_TEST_SWARM_WORKER_DOCKER', 'unix:///run/tg-worker/docker.sock',
                            '... and its worker\'s, which advertises a GPU ...'),
    'swarm_gpu_resource': ('TG_TEST_SWARM_GPU_RESOURCE', 'NVIDIA-GPU', '... as this generic resource'),
}

# the lines of a fixture pipeline.toml that fill() replaces: (line, its key, the Target field written there)
PLACEHOLDERS = (('host = ""  # the test target (tests/target.py)', 'host', 'remote'),
                ('address = ""  # the test target (tests/target.py)', 'address', 'registry'))


@dataclasses.dataclass(frozen=True)
class Login:
    """What OpenSSH resolves for the destination (``ssh -G``)."""
    hostname: str
    user: str
    port: int
    identity_file: str | None  # the first identity file that exists (None: only an agent's keys)
    known_hosts: tuple[str, ...]  # the user known-hosts files that exist
    proxied: bool  # through a ProxyJump or a ProxyCommand

    @property
    def where(self) -> str:
        """The host as tg_pipeline's messages name it: ``user@hostname:port``."""
        return f'{self.user}@{self.hostname}:{self.port}'


@dataclasses.dataclass(frozen=True)
class Target:
    remote: str
    registry: str
    remote_docker: str
    nodocker_user: str
    unknown_user: str
    login_registry: str
    login_registry_user: str
    login_registry_password: str
    netns: str
    link: str
    swarm_head: str
    swarm_head_docker: str
    swarm_worker_docker: str
    swarm_gpu_resource: str

    @classmethod
    def from_env(cls, environ=None) -> 'Target':
        environ = os.environ if environ is None else environ
        return cls(**{field: environ.get(name, default) for field, (name, default, _) in VARIABLES.items()})

    @property
    def alias(self) -> str:
        """The host part of the destination: what tg_pipeline calls its alias (``alias X`` in SSH errors)."""
        return host_of(self.remote)

    def login(self) -> Login:
        """The destination as OpenSSH resolves it (raises RuntimeError, saying why, when it cannot)."""
        return resolve(self.remote)

    def shown(self, login: Login | None = None) -> str:
        """The host as tg_pipeline's SSH errors name it: ``HOSTNAME (alias ALIAS)``, or ``HOSTNAME`` alone when the
        destination names the host itself."""
        hostname = (login or self.login()).hostname
        return f'{hostname} (alias {self.alias})' if self.alias != hostname else hostname

    def head_login(self) -> Login:
        return resolve(self.swarm_head)


def host_of(destination: str) -> str:
    """``host`` of ``host``, ``user@host`` or ``ssh://[user@]host[:port]``."""
    rest = destination[len('ssh://'):].rstrip('/') if destination.startswith('ssh://') else destination
    host = rest.rpartition('@')[2]
    if host.startswith('['):
        return host[1:].partition(']')[0]
    return host.partition(':')[0] if destination.startswith('ssh://') else host


@functools.lru_cache(maxsize=None)
def resolve(destination: str) -> Login:
    """``ssh -G DESTINATION``, read."""
    ssh = shutil.which('ssh')
    if ssh is None:
        raise RuntimeError('no ssh program here')
    done = subprocess.run([ssh, '-G', destination], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f'ssh -G {destination} exited {done.returncode}: {done.stderr.strip()}')
    values: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(' ')
        values.setdefault(key.lower(), []).append(value.strip())
    from tg_pipeline.ssh.settings import home as passwd_home  # OpenSSH's home: the passwd entry's
    home = passwd_home()
    paths = [_path(p, home) for p in values.get('identityfile', [])]
    known = [_path(p, home) for line in values.get('userknownhostsfile', []) for p in line.split()]
    return Login(hostname=values['hostname'][0], user=values['user'][0], port=int(values['port'][0]),
                 identity_file=next((p for p in paths if os.path.isfile(p)), None),
                 known_hosts=tuple(p for p in known if os.path.isfile(p)),
                 proxied=any(values.get(k, ['none'])[0] != 'none' for k in ('proxyjump', 'proxycommand')))



def _path(text: str, home: str) -> str:
    """A path as ssh -G prints it, its ``~`` the passwd home."""
    return home + text[1:] if text == '~' or text.startswith('~/') else text


def fill(pipeline: Path, target: Target | None = None) -> None:
    """Write the target's values into a copied fixture project's pipeline.toml, in place of :data:`PLACEHOLDERS`."""
    target = target or TARGET
    text = pipeline.read_text()
    for line, key, field in PLACEHOLDERS:
        value = getattr(target, field)
        text = re.sub(rf'^{re.escape(line)}$', lambda _: f'{key} = {json.dumps(value)}', text, flags=re.M)
    pipeline.write_text(text)


TARGET = Target.from_env()
