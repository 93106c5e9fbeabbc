"""The configuration: frozen dataclasses, built by one :func:`from_mapping` for pipeline.toml, CLI and API.

Each setting is ONE field below, and its field says everything about it: the type hint is its check
(``Literal[...]`` lists the choices, ``tuple[str, ...]`` is a list of strings, ``float`` any number (not a
boolean), ``Mapping`` a table) and :func:`setting`'s metadata holds the rest: the help text (``doit help``,
the configuration reference), the short command-line name, bounds and checks, the environment variable that
sets it, and how a job's value combines with the one it inherits. The config builder, the Python API
(``SSHDockerOptions``), ``doit help``, ``doit config`` and the reference (:mod:`.reference`) all read the
fields, so a new setting is one field here plus its use.

Precedence, lowest first (one function: :func:`tg_pipeline.config.build.merge`): built-in defaults, the
mapping (pipeline.toml: ``[run]``, then the job's own table; or the Python API's values), the environment
(``TG_PIPELINE_BASE_IMAGE``, ``TG_PIPELINE_SSH_CONFIG``), the command line (doit variables: ``memory=0.5``,
``run.cpu=2``, ``jobs.Train.kwargs.lr=0.01``). A command-line ``[run]`` setting also wins over a job's own
table; a command-line ``jobs.NAME.KEY`` wins over both. Lists a job sets (``env``, ``mounts`` ...) are joined
after [run]'s, its ``caches`` added to [run]'s; such a list given on the command line replaces both.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import types
from pathlib import Path
from typing import Any, Literal, Mapping, NamedTuple, Optional, get_args, get_origin, get_type_hints

from tg_pipeline.config import values as config_run
from tg_pipeline.config.identity import default_base_image, owner, project_id
from tg_pipeline.errors import ConfigError

CONFIG_NAME = 'pipeline.toml'
BASE_IMAGE_ENV = 'TG_PIPELINE_BASE_IMAGE'
SSH_CONFIG_ENV = 'TG_PIPELINE_SSH_CONFIG'
SSH_CLIENT_ENV = 'TG_PIPELINE_SSH_CLIENT'
API_ORIGIN = 'Python API'
COMMAND_LINE = 'command line'
DEFAULT = 'default'
EMPTY: Mapping = types.MappingProxyType({})
NO_LIMIT = '0 (no limit)'

# how a job's value of a setting combines with the value it inherits (metadata ``combine``)
REPLACE = 'replace'  # the later layer wins: the job's table over [run], the command line's [run] over the job's table
OWN = 'own'  # the job's own value when it has one (from its table or the command line), else the inherited one
JOIN = 'join'  # a list: the inherited one, then the job's, without duplicates
MERGE = 'merge'  # a table: the job's entries added to the inherited ones
RUN_ONLY = 'run only'  # no key of a job's table: every job has [run]'s


def setting(default=dataclasses.MISSING, **metadata):
    """A setting's field. Metadata: ``help`` (what it does: ``doit help``, the reference), ``short`` (its
    command-line short name), ``unit`` (what the short name's value is: GB, CORES), ``means`` (what each choice
    means, in the TIP of a wrong one), ``minimum`` (text of the lowest value, 0), ``memory`` (>= 6 MiB unless
    0), ``requirements`` (pip requirements), ``sweep``, ``version`` (a PEP 440 version that is a Docker tag
    too), ``image_prefix``, ``reference`` (an image name:tag), see config_names; ``check`` (a function of
    config_run: (value, dotted key) -> None or (problem, hint)), ``number_as_text`` (a str that takes an
    integer), ``env`` (the environment variable that sets it), ``combine`` (REPLACE, OWN, JOIN, MERGE or
    RUN_ONLY: how a job's value combines with the inherited one), ``unique`` (a list's items: item -> (what it
    takes, e.g. a container path; its parsed form) or None; two items for one place are an error), ``inherit``
    (a job's key: the setting its
    value starts from; the run settings inherit [run]'s own), ``default_text`` (the default in words)."""
    frozen = types.MappingProxyType(metadata)
    if isinstance(default, Mapping):
        return dataclasses.field(default_factory=lambda: default, metadata=frozen)
    return dataclasses.field(default=default, metadata=frozen)


class _Frozen:
    """Containers given to the constructor are stored as tuples and read-only mappings."""

    def __post_init__(self):
        cls: type = type(self)  # a class is Hashable (mypy takes type(self) for its instances' __hash__)
        for name, spec in _specs(cls).items():
            value = getattr(self, name)
            if spec.kind in ('strs', 'array') and isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
            elif spec.kind in ('table', 'strtable') and isinstance(value, dict):
                object.__setattr__(self, name, types.MappingProxyType(dict(value)))


class _Section(_Frozen):
    """A table of pipeline.toml."""


@dataclasses.dataclass(frozen=True)
class PackageSettings(_Section):
    """What every job is packaged as: the project's name, the version, the folders and pip requirements."""
    name: str = setting('', help='the project\'s name on shared hosts (default: the folder\'s name)')
    version: str = setting('0.0.0', short='version', version=True,
                           help='the version every job is built as, unless the job sets its own')
    source_roots: tuple[str, ...] = setting(('jobs',), help='folders packaged with every job, relative to '
                                                            'pipeline.toml')
    dependencies: tuple[str, ...] = setting((), requirements=True,
                                            help='pip requirements of the image\'s dependency layer')
    build_dir: str = setting('build', help='where the task files and doit\'s state go, relative to pipeline.toml')


BUILD_ON_MEANS = ('where run_remote gets the dependency image: "local": built here and sent (registry or SSH); '
                  '"remote": built by the remote engine from requirements.txt, so only requirements and code cross '
                  'the link')


@dataclasses.dataclass(frozen=True)
class DockerSettings(_Section):
    """How the images are built: the base image, the names' prefix, where the dependency image is built."""
    base_image: str = setting('', short='base_image', env=BASE_IMAGE_ENV,
                              help='the image every job image starts from (default: python:X.Y-slim of this Python)')
    image_prefix: str = setting('', image_prefix=True, help='put before every image name, e.g. team-')
    build_on: Literal['local', 'remote'] = setting(
        'local', short='build_on', means=BUILD_ON_MEANS,
        help='local (default): the dependency image is built here; remote: by the remote engine')
    verbose: int = setting(0, short='verbose', minimum='0', help='1: print the whole build log as it comes '
                                                                 '(0: one progress line; a failed build prints it all)')


@dataclasses.dataclass(frozen=True)
class RunSettings(_Section):
    """How every job runs: the environment it gets, its limits, GPUs, data, caches and ports. A job's own table
    may set each of these again, but the few of [run] only (``combine = RUN_ONLY``)."""
    env: tuple[str, ...] = setting((), combine=JOIN,
                                   help='names of variables copied from this environment into the container')
    cpu: float = setting(0.0, short='cpu', unit='CORES', minimum=NO_LIMIT, help='CPU limit in cores, 0 = none')
    memory_gb: float = setting(0.0, short='memory', unit='GB', minimum=NO_LIMIT, memory=True,
                               help='memory limit in GB, 0 = none')
    on_interrupt: Literal['stop', 'detach'] = setting(
        'stop', short='on_interrupt', combine=RUN_ONLY,
        help='what Ctrl-C does to an attached run: stop, or detach (it keeps running)',
        means='"stop": Ctrl-C stops the container; "detach": it keeps running and you re-attach with doit logs '
              '... follow=1')
    env_missing: Literal['error', 'ignore'] = setting(
        'error', short='env_missing',
        help='a variable named in env but unset here: error (the default), or ignore (it arrives unset)',
        means='"error": a run stops before it starts when a variable named in env is not set here; "ignore": it '
              'runs without that variable')
    gpus: str = setting('', short='gpus', check=config_run.check_gpus, number_as_text=True,
                        help='GPUs for each job: all, a count, or device ids (0,2; one: device=1); 0 = none')
    shm_gb: float = setting(0.0, short='shm_gb', minimum="0 (Docker's 64 MB)",
                            help='size of /dev/shm in GB, 0 = Docker\'s 64 MB')
    ipc: Literal['', 'host'] = setting('', short='ipc', help='host: share the host\'s IPC namespace and /dev/shm',
                                       means='"host": the job shares the host\'s IPC namespace and /dev/shm; "" '
                                             '(the default): its own')
    max_runtime_s: float = setting(0.0, short='max_runtime_s', minimum=NO_LIMIT,
                                   help='stop the job after this many seconds, reported as timed out; 0 = no limit')
    mounts: tuple[str, ...] = setting((), short='mounts', combine=JOIN, check=config_run.check_mounts,
                                      unique=config_run.mount_place,
                                      help='host folders of the host the job runs on: HOST:CONTAINER, read-only '
                                           'unless :rw')
    caches: Mapping[str, str] = setting(EMPTY, combine=MERGE, check=config_run.check_caches,
                                        help='named volumes of this project kept between runs on a host: NAME = '
                                             '/path/in/the/container')
    ports: tuple[str, ...] = setting((), short='ports', combine=JOIN, check=config_run.check_ports,
                                     unique=config_run.port_place,
                                     help='container ports published on the host: PORT, HOST_PORT:PORT or '
                                          'IP:HOST_PORT:PORT')
    env_files: tuple[str, ...] = setting((), short='env_files', combine=JOIN,
                                         help='NAME=value files read here (relative to pipeline.toml), sent as env '
                                              'values are')
    max_concurrent: int = setting(0, short='max_concurrent', minimum='0 (as the GPUs, cpu and memory_gb allow)',
                                  help='variants of a sweep running at once, on any host; 0: as many as the free '
                                       'GPUs allow for a GPU job, else as cpu and memory_gb allow on one host (all '
                                       'when neither is set; swarm: all)')
    fail_fast: bool = setting(False, short='fail_fast',
                              help='true (fail_fast=1): the first failed variant of a sweep stops the others; false '
                                   '(the default): they go on')
    gpu_share: bool = setting(False, short='gpu_share',
                              help='true (gpu_share=1): the run may use GPUs other runs hold; false (the default): '
                                   'each GPU of a host goes to one run at a time')
    gpu_wait: bool = setting(True, short='gpu_wait',
                             help='true (the default): a run whose GPUs are taken waits in a queue until they are '
                                  'free; false (gpu_wait=0): it fails at once, naming who holds them')
    secret_env: tuple[str, ...] = setting((), combine=JOIN, check=config_run.check_secret_names,
                                          help='names of variables copied from this environment into the job\'s '
                                               'environment only: never in docker inspect, the image, a record or '
                                               'a log (see docs/runs.md)')


@dataclasses.dataclass(frozen=True)
class RemoteSettings(_Section):
    """The remote Docker host of run_remote, reached over SSH (~/.ssh/config applies), and how images get there."""
    host: str = setting('', short='host', check=config_run.check_destination,
                        help='the remote Docker host: an address, or a Host alias of ~/.ssh/config')
    user: str = setting('', help='SSH login name (default: from ~/.ssh/config)')
    port: int = setting(0, minimum='0 (from ~/.ssh/config)', check=config_run.check_port_number,
                        help='SSH port, 0 = from ~/.ssh/config')
    identity_file: str = setting('', help='SSH private key file (default: from ~/.ssh/config)')
    accept_unknown_host_keys: bool = setting(False, help='true: trust a host key seen for the first time')
    connect_timeout: float = setting(0.0, minimum='0 (ConnectTimeout of the ssh config, else 15)',
                                     help='seconds to wait for the SSH login')
    ssh_config: str = setting('', env=SSH_CONFIG_ENV,
                              help='an ssh config file to read instead of ~/.ssh/config (like ssh -F)')
    ssh_client: Literal['auto', 'openssh', 'paramiko'] = setting(
        'auto', env=SSH_CLIENT_ENV,
        help='openssh (one shared connection per host and project), paramiko, or auto',
        means='"openssh": the ssh program with one shared connection per host and project (ControlMaster); '
              '"paramiko": a login of our own per command; "auto" (the default): openssh where the ssh program can '
              'share connections (not on Windows)')
    control_persist: float = setting(300.0, minimum='0 (the shared connection ends with the command)',
                                     help='seconds the shared SSH connection stays after its last use (0: closed '
                                          'after each command)')
    transfer: Literal['', 'registry', 'ssh'] = setting(
        '', short='transfer', help='how the image reaches the remote: registry, or ssh (only the missing layers)',
        means='"registry": push there, pull on the remote; "ssh": send only the missing layers over SSH; "" (the '
              'default): "registry" when [registry] has an address, else "ssh"')


@dataclasses.dataclass(frozen=True)
class SwarmSettings(_Section):
    """The Docker Swarm of run_swarm: its manager, what each task reserves (how many at once: [run]
    max_concurrent)."""
    manager: Literal['local', 'remote'] = setting(
        'local', short='manager', help='the swarm manager: local (this engine) or remote (the [remote] host)',
        means='"local": this machine\'s engine is a swarm manager; "remote": the [remote] host is')
    cpu_reservation: float = setting(0.0, short='reserve_cpu', unit='CORES', minimum='0',
                                     help='CPU a node must have free for each task')
    memory_reservation_gb: float = setting(0.0, short='reserve_memory', unit='GB', minimum='0',
                                           help='memory in GB a node must have free for each task')
    constraints: tuple[str, ...] = setting((), help='placement constraints, e.g. node.labels.gpu == true')
    schedule_timeout: float = setting(30.0, short='schedule_timeout', minimum='0',
                                      help='seconds a task may wait for a node before the run fails')
    labels: Mapping[str, str] = setting(EMPTY, help='your labels on the service and its containers')
    gpu_resource: str = setting('gpu', help='the nodes\' generic resource that gpus = N reserves on swarm')


@dataclasses.dataclass(frozen=True)
class RegistrySettings(_Section):
    """The registry images are pushed to (run_swarm needs one; run_remote uses it when given)."""
    address: str = setting('', short='registry', check=config_run.check_registry,
                           help='the registry images are pushed to, e.g. registry.example.com:5000')
    pull_address: str = setting('', short='pull_address',
                                help='where the remote engine and the swarm\'s nodes pull from, when they reach the '
                                     'registry under another address than this machine (a tunnel, a bastion); '
                                     'default: address')
    username_env: str = setting('', help='name of the variable holding the registry login')
    password_env: str = setting('', help='name of the variable holding the registry password')


# keys that moved to another table, still read where they were: old dotted key -> new dotted key
MOVED = {'swarm.max_concurrent': 'run.max_concurrent'}

SECTIONS = {'package': PackageSettings, 'docker': DockerSettings, 'run': RunSettings,
            'remote': RemoteSettings, 'swarm': SwarmSettings, 'registry': RegistrySettings}


@dataclasses.dataclass(frozen=True)
class JobConfig(_Frozen):
    """Everything one job's tasks need, already merged and validated. The fields with a ``help`` are the keys of
    its [jobs.NAME] table, besides the run settings (``run``: [run]'s, refined by the job's table)."""
    name: str
    factory: str = setting('', default_text='none: required in pipeline.toml',  # '': the API's pickled job
                           help='module:Class (or function) that builds the job')
    args: tuple = setting((), help='positional arguments of the factory')
    kwargs: Mapping = setting(EMPTY, help='keyword arguments of the factory')
    package: str = setting('', default_text='the job\'s name', help='the job\'s package and image name')
    version: str = setting('', version=True, inherit='package.version', combine=OWN, help='the job\'s version')
    module: str = ''  # the unique module name of package and version (identity.module_name)
    dependencies: tuple[str, ...] = setting((), requirements=True, inherit='package.dependencies', combine=JOIN,
                                            help='more pip requirements for this job')
    sweep: Mapping = setting(EMPTY, sweep=True, help='one variant per combination of these values (run_local, '
                                                     'run_remote, run_swarm)')
    image: str = setting('', reference=True, help='name:tag of the image, instead of package:version')
    build_on: Literal['local', 'remote'] = setting('local', inherit='docker.build_on', means=BUILD_ON_MEANS,
                                                   help='where this job\'s dependency image is built for run_remote')
    run: RunSettings = dataclasses.field(default_factory=RunSettings)
    line: Optional[int] = None
    factory_line: Optional[int] = None

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

    def value(self, key: str):
        """The value of a key of the job's table (``cpu`` is ``run.cpu``)."""
        run_settings: type = type(self.run)  # Hashable, see _Frozen
        return getattr(self.run if key in _specs(run_settings) else self, key)


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
    jobs: Mapping[str, JobConfig] = setting(EMPTY)
    # dotted key ('run.cpu', 'jobs.Train.kwargs.lr') -> 'default' | '/abs/pipeline.toml:7' |
    # 'environment TG_PIPELINE_BASE_IMAGE' | 'command line' | 'Python API'
    origins: Mapping[str, str] = setting(EMPTY)

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


def job_specs() -> dict[str, _Spec]:
    """The keys of a [jobs.NAME] table: JobConfig's own (those with a help text), then the run settings but
    those of [run] only."""
    return _job_specs(SECTIONS['run'])


@functools.lru_cache(maxsize=None)
def _job_specs(run_settings: type) -> dict[str, _Spec]:
    own = {key: spec for key, spec in _specs(JobConfig).items() if 'help' in spec.meta}
    return {**own, **{key: spec for key, spec in _specs(run_settings).items() if spec.meta.get('combine') != RUN_ONLY}}


def inherited(key: str) -> str | None:
    """The setting a job's ``key`` starts from: ``run.cpu`` for cpu, ``package.version`` for version; None when
    it starts from its own default."""
    if key in _specs(SECTIONS['run']):
        return f'run.{key}'
    return _specs(JobConfig)[key].meta.get('inherit')


def job_help(key: str) -> str:
    """What a key of a job's table does, and how it combines with what it inherits."""
    spec, origin = job_specs()[key], inherited(key)
    combine = spec.meta.get('combine', REPLACE)
    if origin is None:
        return spec.meta['help']
    if combine == JOIN:
        return f'{spec.meta["help"]}; joined after {origin}'
    if combine == MERGE:
        return f'{spec.meta["help"]}; added to {origin}'
    return f'{spec.meta["help"]} (default: {origin})'


def aliases() -> dict[str, str]:
    """Short command-line name -> ``section.key`` (``memory`` -> ``run.memory_gb``), from the fields' ``short``;
    [run]'s first, the most used."""
    order = ['run', *(name for name in SECTIONS if name != 'run')]
    return {spec.meta['short']: f'{name}.{key}' for name in order for key, spec in _specs(SECTIONS[name]).items()
            if 'short' in spec.meta}


def env_settings() -> dict[str, str]:
    """The settings the environment sets (over pipeline.toml, under the command line): dotted key -> variable."""
    return {f'{name}.{key}': spec.meta['env'] for name, cls in SECTIONS.items()
            for key, spec in _specs(cls).items() if 'env' in spec.meta}


# the doit variables that are no setting of pipeline.toml: name -> (what it does, a yes/no flag)
CONTROLS = {
    'job': ('the job (default: every job)', False),
    'detach': ('start the run and return at once, printing its run id', True),
    'where': ('whose runs: local (default), remote or swarm', False),
    'run_id': ('the run (default: the job\'s latest)', False),
    'follow': ('stream the output until the run ends, then collect it', True),
    'all_projects': ('every project\'s runs on the host, read only', True),
    'days': ('remove ended runs older than this many days (default 7; 0: every ended run)', False),
    'keep': ('job images to keep per job, the newest (default 2)', False),
    'all': ('draw every task, the lifecycle ones too', True),
    'files': ('draw the files: dependencies and targets', True),
    'cmd': ('the shell command line to run in the job\'s container, e.g. cmd="nvidia-smi"', False),
    'port': ('the port of the job\'s container to reach, e.g. port=6006', False),
    'local_port': ('the port here that forwards to it (default: the same as port)', False),
    'caches': ('also remove this project\'s cache volumes from the host', True),
    'run_a': ('the first run of doit diff (its id, or the start of it)', False),
    'run_b': ('the second run of doit diff (its id, or the start of it)', False),
    'dest': ('the folder doit export writes the run\'s source tree to (new, or empty)', False),
    'variant': ('one variant of a sweep, by its number (default: the whole sweep)', False),
}
CONTROL_VARS = frozenset(CONTROLS)
