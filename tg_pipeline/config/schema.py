"""The configuration: frozen dataclasses, built by one :func:`from_mapping` for pipeline.toml, CLI and API.

Each setting is a field below. Its type hint is its check: ``Literal[...]`` lists the
choices, ``tuple[str, ...]`` is a list of strings, ``float`` any number (not a boolean),
``Mapping`` a table; field metadata adds lower bounds. Every error names where the bad
value came from: ``file:line`` and key, the command line, or the Python API.

Precedence, lowest first: built-in defaults, the mapping (pipeline.toml: ``[run]``, then
the job's own table; or the Python API's values), the environment
(``TG_PIPELINE_BASE_IMAGE``, ``TG_PIPELINE_SSH_CONFIG``), the command line (doit variables: ``memory=0.5``,
``run.cpu=2``, ``jobs.Train.kwargs.lr=0.01``). A command-line ``[run]`` setting also wins
over a job's own table; a command-line ``jobs.NAME.KEY`` wins over both.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import sys
import types
from pathlib import Path
from typing import Any, Literal, Mapping, NamedTuple, Optional, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

from tg_pipeline.config import values as config_run
from tg_pipeline.config.text import LineIndex  # noqa: F401 (part of this module's interface)
from tg_pipeline.errors import ConfigError
from tg_pipeline.config.identity import default_base_image, owner, project_id

CONFIG_NAME = 'pipeline.toml'
BASE_IMAGE_ENV = 'TG_PIPELINE_BASE_IMAGE'
SSH_CONFIG_ENV = 'TG_PIPELINE_SSH_CONFIG'
SSH_CLIENT_ENV = 'TG_PIPELINE_SSH_CLIENT'
# settings the environment sets (over pipeline.toml, under the command line)
ENV_SETTINGS = {'docker.base_image': BASE_IMAGE_ENV, 'remote.ssh_config': SSH_CONFIG_ENV,
                'remote.ssh_client': SSH_CLIENT_ENV}
API_ORIGIN = 'Python API'
COMMAND_LINE = 'command line'
DEFAULT = 'default'
EMPTY: Mapping = types.MappingProxyType({})

# short names for command-line overrides
ALIASES = {
    'memory': 'run.memory_gb', 'cpu': 'run.cpu', 'base_image': 'docker.base_image',
    'version': 'package.version', 'host': 'remote.host', 'registry': 'registry.address',
    'transfer': 'remote.transfer', 'on_interrupt': 'run.on_interrupt', 'manager': 'swarm.manager',
    'max_concurrent': 'swarm.max_concurrent', 'reserve_cpu': 'swarm.cpu_reservation',
    'reserve_memory': 'swarm.memory_reservation_gb', 'schedule_timeout': 'swarm.schedule_timeout',
    'env_missing': 'run.env_missing', 'build_on': 'docker.build_on', 'verbose': 'docker.verbose',
}
# doit variables that are not config overrides
CONTROL_VARS = {'job', 'run_id', 'detach', 'where', 'follow', 'days', 'all_projects', 'keep', 'files', 'all'}
NO_LIMIT = '0 (no limit)'
ENV_MISSING_HELP = ('"error": a run stops before it starts when a variable named in env is not set here; '
                    '"ignore": it runs without that variable')
BUILD_ON_HELP = ('where run_remote gets the dependency image: "local": built here and sent (registry or SSH); '
                 '"remote": built by the remote engine from requirements.txt, so only requirements and code cross '
                 'the link')
# GPUs, data and caches: short names on the command line, and doit variables of exec/forward/cleanup
ALIASES.update({key: f'run.{key}' for key in config_run.RUN_KEYS if key != 'caches'})
CONTROL_VARS |= {'cmd', 'port', 'local_port', 'caches'}
IPC_HELP = '"host": the job shares the host\'s IPC namespace and /dev/shm; "" (the default): its own'


def _field(default=dataclasses.MISSING, **metadata):
    """A field with metadata: ``minimum`` (text of the lowest value), ``memory`` (>= 6 MiB unless 0),
    ``requirements`` (pip requirements), ``help`` (what the choices mean), ``sweep``, ``version`` (a PEP 440
    version that is a Docker tag too), ``image_prefix``, ``reference`` (an image name:tag); see config_names;
    ``check`` (a function of config_run: (value, dotted key) -> None or (problem, hint)), ``number_as_text``
    (a str that takes an integer)."""
    if isinstance(default, Mapping):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class _Frozen:
    """Containers given to the constructor are stored as tuples and read-only mappings."""

    def __post_init__(self):
        for name, spec in _specs(type(self)).items():
            value = getattr(self, name)
            if spec.kind in ('strs', 'array') and isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
            elif spec.kind in ('table', 'strtable') and isinstance(value, dict):
                object.__setattr__(self, name, types.MappingProxyType(dict(value)))


class _Section(_Frozen):
    """A table of pipeline.toml."""


@dataclasses.dataclass(frozen=True)
class PackageSettings(_Section):
    name: str = ''  # project name; '' = the folder's name
    version: str = _field('0.0.0', version=True)
    source_roots: tuple[str, ...] = ('jobs',)
    dependencies: tuple[str, ...] = _field((), requirements=True)
    build_dir: str = 'build'


@dataclasses.dataclass(frozen=True)
class DockerSettings(_Section):
    base_image: str = ''
    image_prefix: str = _field('', image_prefix=True)
    build_on: Literal['local', 'remote'] = _field('local', help=BUILD_ON_HELP)
    verbose: int = _field(0, minimum='0')  # 1: the whole build log as it comes (a failed build prints it anyway)


@dataclasses.dataclass(frozen=True)
class RunSettings(_Section):
    env: tuple[str, ...] = ()
    cpu: float = _field(0.0, minimum=NO_LIMIT)
    memory_gb: float = _field(0.0, minimum=NO_LIMIT, memory=True)
    on_interrupt: Literal['stop', 'detach'] = _field(
        'stop', help='"stop": Ctrl-C stops the container; "detach": it keeps running and you re-attach '
                     'with doit logs ... follow=1')
    env_missing: Literal['error', 'ignore'] = _field('error', help=ENV_MISSING_HELP)
    # GPUs, data and caches (config_run.RUN_KEYS): also keys of a job's table
    gpus: str = _field('', check=config_run.check_gpus, number_as_text=True)
    shm_gb: float = _field(0.0, minimum="0 (Docker's 64 MB)")
    ipc: Literal['', 'host'] = _field('', help=IPC_HELP)
    max_runtime_s: float = _field(0.0, minimum=NO_LIMIT)
    mounts: tuple[str, ...] = _field((), check=config_run.check_mounts)
    caches: Mapping[str, str] = _field(EMPTY, check=config_run.check_caches)
    ports: tuple[str, ...] = _field((), check=config_run.check_ports)
    env_files: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RemoteSettings(_Section):
    host: str = ''
    user: str = ''
    port: int = _field(0, minimum='0 (from ~/.ssh/config)')
    identity_file: str = ''
    accept_unknown_host_keys: bool = False
    connect_timeout: float = _field(0.0, minimum='0 (ConnectTimeout of the ssh config, else 15)')
    ssh_config: str = ''  # an ssh_config file to use instead of OpenSSH's own (ssh -F); env TG_PIPELINE_SSH_CONFIG
    ssh_client: Literal['auto', 'openssh', 'paramiko'] = _field(
        'auto', help='"openssh": the ssh program with one shared connection per host and project (ControlMaster); '
                     '"paramiko": a login of our own per command; "auto" (the default): openssh where the ssh '
                     'program can share connections (not on Windows); env TG_PIPELINE_SSH_CLIENT')
    control_persist: float = _field(300.0, minimum='0 (the shared connection ends with the command)')
    transfer: Literal['', 'registry', 'ssh'] = _field(
        '', help='"registry": push there, pull on the remote; "ssh": send only the missing layers over SSH; '
                 '"" (the default): "registry" when [registry] has an address, else "ssh"')


@dataclasses.dataclass(frozen=True)
class SwarmSettings(_Section):
    manager: Literal['local', 'remote'] = _field(
        'local', help='"local": this machine\'s engine is a swarm manager; "remote": the [remote] host is')
    max_concurrent: int = _field(0, minimum='0')
    cpu_reservation: float = _field(0.0, minimum='0')
    memory_reservation_gb: float = _field(0.0, minimum='0')
    constraints: tuple[str, ...] = ()
    schedule_timeout: float = _field(30.0, minimum='0')
    labels: Mapping[str, str] = _field(EMPTY)
    gpu_resource: str = 'gpu'  # the generic resource (node-generic-resources) that gpus = N reserves


@dataclasses.dataclass(frozen=True)
class RegistrySettings(_Section):
    address: str = ''
    username_env: str = ''
    password_env: str = ''


SECTIONS = {'package': PackageSettings, 'docker': DockerSettings, 'run': RunSettings,
            'remote': RemoteSettings, 'swarm': SwarmSettings, 'registry': RegistrySettings}


@dataclasses.dataclass(frozen=True)
class JobConfig(_Frozen):
    """Everything one job's tasks need, already merged and validated."""
    name: str
    factory: str  # '' only from the Python API, which gives the pickled job itself
    args: tuple
    kwargs: Mapping
    package: str
    version: str = _field(version=True)
    module: str
    dependencies: tuple[str, ...] = _field(requirements=True)
    env: tuple[str, ...] = _field()
    cpu: float = _field(minimum=NO_LIMIT)
    memory_gb: float = _field(minimum=NO_LIMIT, memory=True)
    sweep: Mapping = _field(EMPTY, sweep=True)
    image: str = _field('', reference=True)  # name:tag when not derived from package and version
    env_missing: Literal['error', 'ignore'] = _field('error', help=ENV_MISSING_HELP)
    build_on: Literal['local', 'remote'] = _field('local', help=BUILD_ON_HELP)
    line: Optional[int] = None
    factory_line: Optional[int] = None
    # GPUs, data and caches (config_run.RUN_KEYS), from [run] unless the job's table sets them
    gpus: str = _field('', check=config_run.check_gpus, number_as_text=True)
    shm_gb: float = _field(0.0, minimum="0 (Docker's 64 MB)")
    ipc: Literal['', 'host'] = _field('', help=IPC_HELP)
    max_runtime_s: float = _field(0.0, minimum=NO_LIMIT)
    mounts: tuple[str, ...] = _field((), check=config_run.check_mounts)
    caches: Mapping[str, str] = _field(EMPTY, check=config_run.check_caches)
    ports: tuple[str, ...] = _field((), check=config_run.check_ports)
    env_files: tuple[str, ...] = ()

    def fingerprint(self) -> dict:
        """What the payload depends on, besides the source files (JSON-able, for doit's config_changed)."""
        return _plain({'factory': self.factory, 'args': self.args, 'kwargs': self.kwargs,
                       'module': self.module, 'sweep': self.sweep})

    def variants(self) -> list[tuple[str, dict]]:
        """(label, kwargs) of every combination of the sweep's values, in the declared order."""
        import itertools
        names = list(self.sweep)
        return [(','.join(f'{n}={v}' for n, v in zip(names, combo)), {**self.kwargs, **dict(zip(names, combo))})
                for combo in itertools.product(*(self.sweep[n] for n in names))]


# the keys of a [jobs.NAME] table (the other fields of JobConfig are derived)
JOB_KEYS = ('factory', 'args', 'kwargs', 'package', 'version', 'dependencies', 'env', 'cpu', 'memory_gb',
            'sweep', 'image', 'env_missing', 'build_on')
JOB_KEYS += config_run.RUN_KEYS


@dataclasses.dataclass(frozen=True)
class Config(_Frozen):
    path: Path
    root: Path
    package: PackageSettings = dataclasses.field(default_factory=PackageSettings)
    docker: DockerSettings = dataclasses.field(default_factory=DockerSettings)
    run: RunSettings = dataclasses.field(default_factory=RunSettings)
    remote: RemoteSettings = dataclasses.field(default_factory=RemoteSettings)
    swarm: SwarmSettings = dataclasses.field(default_factory=SwarmSettings)
    registry: RegistrySettings = dataclasses.field(default_factory=RegistrySettings)
    jobs: Mapping[str, JobConfig] = _field(EMPTY)
    # dotted key ('run.cpu', 'jobs.Train.kwargs.lr') -> 'default' | '/abs/pipeline.toml:7' |
    # 'environment TG_PIPELINE_BASE_IMAGE' | 'command line' | 'Python API'
    origins: Mapping[str, str] = _field(EMPTY)

    @property
    def build_dir(self) -> Path:
        return self.root / self.package.build_dir

    @property
    def source_roots(self) -> list[Path]:
        return [self.root / r for r in self.package.source_roots]

    @property
    def base_image(self) -> str:
        return self.docker.base_image or default_base_image()

    @property
    def owner(self) -> str:
        return owner()

    @property
    def project(self) -> str:
        """Stable id of this project for labels: ``slug-HASH8`` (see :func:`project_id`)."""
        return project_id(self.package.name, self.root, owner())

    def job(self, name: str) -> JobConfig:
        try:
            return self.jobs[name]
        except KeyError:
            known = ', '.join(sorted(self.jobs)) or '(none)'
            raise ConfigError(f'unknown job {name!r}; the jobs defined are: {known}',
                              file=str(self.path), key='job',
                              hint=f'add a [jobs.{name}] table to {self.path.name} or pick one of: {known}') from None


def _plain(value):
    """Tuples as lists, mappings as dicts: what JSON (and doit's config_changed) takes."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Spec(NamedTuple):
    kind: str  # str int float bool choice strs array table strtable any
    choices: tuple
    default: Any
    meta: Mapping


def _kind(hint) -> tuple[str, tuple]:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return 'choice', args
    if hint is tuple or origin is tuple:
        return ('strs' if args == (str, Ellipsis) else 'array'), ()
    if hint is Mapping or origin is collections.abc.Mapping:
        return ('strtable' if args == (str, str) else 'table'), ()
    return {str: 'str', int: 'int', float: 'float', bool: 'bool'}.get(hint, 'any'), ()


@functools.lru_cache(maxsize=None)
def _specs(cls) -> dict[str, _Spec]:
    hints = get_type_hints(cls)
    specs = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        specs[f.name] = _Spec(*_kind(hints[f.name]), default, f.metadata)
    return specs


