"""pipeline.toml: load, validate (with file/key/line in every error), apply overrides.

Precedence, lowest first: built-in defaults, pipeline.toml ([run] then the
job's own table), the environment (``TG_PIPELINE_BASE_IMAGE``), command-line
overrides (doit variables such as ``memory=0.5`` or ``run.cpu=2``).
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tg_pipeline.errors import ConfigError

CONFIG_NAME = 'pipeline.toml'
BASE_IMAGE_ENV = 'TG_PIPELINE_BASE_IMAGE'

NUMBER = (int, float)
STR_LIST = 'list of strings'

# section -> key -> (type, default). A type is a Python type/tuple or STR_LIST.
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    'package': {
        'version': (str, '0.0.0'),
        'source_roots': (STR_LIST, ['jobs']),
        'dependencies': (STR_LIST, []),
        'build_dir': (str, 'build'),
    },
    'docker': {
        'base_image': (str, ''),
        'image_prefix': (str, ''),
    },
    'run': {
        'env': (STR_LIST, []),
        'cpu': (NUMBER, 0),
        'memory_gb': (NUMBER, 0),
        'on_interrupt': (str, 'stop'),
    },
    'remote': {
        'host': (str, ''),
        'user': (str, ''),
        'port': (int, 0),
        'identity_file': (str, ''),
        'accept_unknown_host_keys': (bool, False),
        'connect_timeout': (NUMBER, 15),
        'transfer': (str, ''),
    },
    'swarm': {
        'manager': (str, 'local'),
        'max_concurrent': (int, 0),
        'cpu_reservation': (NUMBER, 0),
        'memory_reservation_gb': (NUMBER, 0),
        'constraints': (STR_LIST, []),
        'schedule_timeout': (NUMBER, 30),
        'labels': (dict, {}),
    },
    'registry': {
        'address': (str, ''),
        'username_env': (str, ''),
        'password_env': (str, ''),
    },
}
JOB_SCHEMA: dict[str, tuple[Any, Any]] = {
    'factory': (str, None),
    'args': (list, []),
    'kwargs': (dict, {}),
    'package': (str, ''),
    'version': (str, ''),
    'dependencies': (STR_LIST, []),
    'env': (STR_LIST, []),
    'cpu': (NUMBER, None),
    'memory_gb': (NUMBER, None),
    'sweep': (dict, {}),
}
# short names for command-line overrides
ALIASES = {
    'memory': 'run.memory_gb', 'cpu': 'run.cpu', 'base_image': 'docker.base_image',
    'version': 'package.version', 'host': 'remote.host', 'registry': 'registry.address',
    'transfer': 'remote.transfer', 'on_interrupt': 'run.on_interrupt', 'manager': 'swarm.manager',
    'max_concurrent': 'swarm.max_concurrent', 'reserve_cpu': 'swarm.cpu_reservation',
    'reserve_memory': 'swarm.memory_reservation_gb', 'schedule_timeout': 'swarm.schedule_timeout',
}
# doit variables that are not config overrides
CONTROL_VARS = {'job', 'run_id', 'detach', 'where', 'follow', 'days'}


@dataclasses.dataclass
class JobConfig:
    """Everything one job's tasks need, already merged and validated."""
    name: str
    factory: str
    args: list
    kwargs: dict
    package: str
    version: str
    module: str
    dependencies: list[str]
    env: list[str]
    cpu: float
    memory_gb: float
    line: int | None = None
    factory_line: int | None = None
    image: str = ''  # name:tag when not derived from package and version (Python API)
    sweep: dict = dataclasses.field(default_factory=dict)

    def fingerprint(self) -> dict:
        """What the payload depends on, besides the source files."""
        return {'factory': self.factory, 'args': self.args, 'kwargs': self.kwargs,
                'module': self.module, 'sweep': self.sweep}

    def variants(self) -> list[tuple[str, dict]]:
        """(label, kwargs) of every combination of the sweep's values, in the declared order."""
        import itertools
        names = list(self.sweep)
        return [(','.join(f'{n}={v}' for n, v in zip(names, combo)), {**self.kwargs, **dict(zip(names, combo))})
                for combo in itertools.product(*(self.sweep[n] for n in names))]


@dataclasses.dataclass
class Config:
    path: Path
    root: Path
    package: dict
    docker: dict
    run: dict
    remote: dict
    registry: dict
    jobs: dict[str, JobConfig]
    swarm: dict = dataclasses.field(default_factory=lambda: {k: d for k, (_, d) in SCHEMA['swarm'].items()})

    @property
    def build_dir(self) -> Path:
        return self.root / self.package['build_dir']

    @property
    def source_roots(self) -> list[Path]:
        return [self.root / r for r in self.package['source_roots']]

    @property
    def base_image(self) -> str:
        return self.docker['base_image'] or default_base_image()

    def job(self, name: str) -> JobConfig:
        try:
            return self.jobs[name]
        except KeyError:
            known = ', '.join(sorted(self.jobs)) or '(none)'
            raise ConfigError(f'unknown job {name!r}; the jobs defined are: {known}',
                              file=str(self.path), key='job',
                              hint=f'add a [jobs.{name}] table to {self.path.name} or pick one of: {known}') from None


def default_base_image() -> str:
    return 'python:%d.%d-slim' % sys.version_info[:2]


def module_name(package: str, version: str) -> str:
    """The unique importable module name: ``name__version`` with separators as ``_``."""
    return re.sub(r'[^0-9a-zA-Z_]', '_', f'{package}__{version}').lower()


class _Lines:
    """Finds the line of a ``key = value`` inside a ``[table]`` of the TOML text."""

    def __init__(self, text: str):
        self.index: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        table = ''
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            header = re.match(r'^\[\s*([^\[\]]+?)\s*\]', stripped)
            if header:
                table = re.sub(r'\s*\.\s*', '.', header.group(1)).replace('"', '')
                self.tables.setdefault(table, number)
                continue
            key = re.match(r'^([A-Za-z0-9_\-."]+)\s*=', stripped)
            if key:
                self.index.setdefault((table, key.group(1).strip('"')), number)

    def of(self, table: str, key: str | None = None) -> int | None:
        if key is not None and (table, key) in self.index:
            return self.index[(table, key)]
        return self.tables.get(table)


def _type_name(kind) -> str:
    if kind is STR_LIST:
        return STR_LIST
    if kind is NUMBER:
        return 'number'
    return {str: 'string', int: 'integer', bool: 'boolean (true/false)', list: 'array', dict: 'table'}[kind]


def _check_type(value, kind) -> bool:
    if kind is STR_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, kind)


def parse_override_value(raw: str):
    """A command-line value is read as a TOML value when it is one, else as a string."""
    try:
        return tomllib.loads(f'v = {raw}')['v']
    except tomllib.TOMLDecodeError:
        return raw


def load(path: str | os.PathLike | None = None, overrides: dict[str, str] | None = None,
         environ: dict | None = None) -> Config:
    """Load and validate pipeline.toml; raise :class:`ConfigError` naming file, key and line."""
    path = Path(path or CONFIG_NAME).resolve()
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ConfigError('file not found', file=str(path),
                          hint='run `tg-pipeline init` in your project folder to create one') from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = re.search(r'line (\d+)', str(e))
        raise ConfigError(f'not valid TOML: {e}', file=str(path), line=int(line.group(1)) if line else None,
                          hint='fix the syntax at that line (strings need quotes, tables [like.this])') from None
    lines = _Lines(text)
    where = dict(file=str(path))

    sections: dict[str, dict] = {}
    for section, value in data.items():
        if section == 'jobs':
            continue
        if section not in SCHEMA:
            raise ConfigError(f'unknown section [{section}]', key=section, line=lines.of(section), **where,
                              hint='known sections: ' + ', '.join(sorted([*SCHEMA, 'jobs'])))
        if not isinstance(value, dict):
            raise ConfigError(f'{section} must be a table [{section}]', key=section, line=lines.of('', section), **where)
    for section, keys in SCHEMA.items():
        given = data.get(section, {})
        merged = {}
        for key, (kind, default) in keys.items():
            merged[key] = given.get(key, default)
        for key, value in given.items():
            if key not in keys:
                raise ConfigError(f'unknown key {key!r} in [{section}]', key=f'{section}.{key}',
                                  line=lines.of(section, key), **where,
                                  hint=f'known keys of [{section}]: ' + ', '.join(keys))
            if not _check_type(value, keys[key][0]):
                raise ConfigError(f'{section}.{key} must be a {_type_name(keys[key][0])}, not {value!r}',
                                  key=f'{section}.{key}', line=lines.of(section, key), **where)
        sections[section] = merged

    if environ.get(BASE_IMAGE_ENV):
        sections['docker']['base_image'] = environ[BASE_IMAGE_ENV]

    job_overrides: dict[str, Any] = {}
    for raw_key, raw_value in (overrides or {}).items():
        if raw_key in CONTROL_VARS:
            continue
        dotted = ALIASES.get(raw_key, raw_key)
        section, _, key = dotted.partition('.')
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise ConfigError(f'unknown command-line setting {raw_key}={raw_value}', key=raw_key,
                              hint='use section.key (e.g. run.memory_gb=0.5) or one of: ' + ', '.join(sorted(ALIASES)))
        value = parse_override_value(raw_value)
        kind = SCHEMA[section][key][0]
        if kind is str and not isinstance(value, str):
            value = str(raw_value)
        if kind is STR_LIST and isinstance(value, str):
            value = [v for v in value.split(',') if v]
        if not _check_type(value, kind):
            raise ConfigError(f'{raw_key} must be a {_type_name(kind)}, not {raw_value!r}', key=raw_key,
                              hint=f'for example {raw_key}=1')
        sections[section][key] = value
        if section == 'run':
            job_overrides[key] = value
    _check_limits(sections['run'], where, lines, 'run')
    if sections['run']['on_interrupt'] not in ('stop', 'detach'):
        raise ConfigError(f'run.on_interrupt must be "stop" or "detach", not {sections["run"]["on_interrupt"]!r}',
                          key='run.on_interrupt', line=lines.of('run', 'on_interrupt'), **where,
                          hint='"stop": Ctrl-C stops the container; "detach": it keeps running and you re-attach '
                               'with doit logs ... follow=1')
    if sections['swarm']['manager'] not in ('local', 'remote'):
        raise ConfigError(f'swarm.manager must be "local" or "remote", not {sections["swarm"]["manager"]!r}',
                          key='swarm.manager', line=lines.of('swarm', 'manager'), **where,
                          hint='"local": this machine\'s engine is a swarm manager; "remote": the [remote] host is')
    for key in ('cpu_reservation', 'memory_reservation_gb', 'max_concurrent', 'schedule_timeout'):
        if sections['swarm'][key] < 0:
            raise ConfigError(f'swarm.{key} must be 0 or positive, not {sections["swarm"][key]}',
                              key=f'swarm.{key}', line=lines.of('swarm', key), **where)
    if sections['remote']['transfer'] not in ('', 'registry', 'ssh'):
        raise ConfigError(f'remote.transfer must be "registry" or "ssh", not {sections["remote"]["transfer"]!r}',
                          key='remote.transfer', line=lines.of('remote', 'transfer'), **where,
                          hint='"registry": push there, pull on the remote; "ssh": send only the missing layers '
                               'over SSH (the default when no [registry] address is set)')

    jobs_table = data.get('jobs', {})
    if not isinstance(jobs_table, dict):
        raise ConfigError('jobs must be tables like [jobs.MyJob]', key='jobs', line=lines.of('', 'jobs'), **where)
    jobs = {}
    for name, table in jobs_table.items():
        jobs[name] = _job(name, table, sections, job_overrides, lines, where)
    return Config(path=path, root=path.parent, jobs=jobs, **sections)


def _check_limits(values: dict, where: dict, lines: _Lines, table: str) -> None:
    for key in ('cpu', 'memory_gb'):
        value = values.get(key)
        if value is not None and value < 0:
            raise ConfigError(f'{key} must be 0 (no limit) or positive, not {value}', key=f'{table}.{key}',
                              line=lines.of(table, key), **where)
    memory = values.get('memory_gb')
    if memory and memory * 1024 < 6:
        raise ConfigError(f'memory_gb = {memory} is below the 6 MiB Docker accepts', key=f'{table}.memory_gb',
                          line=lines.of(table, 'memory_gb'), **where, hint='give the limit in gigabytes, e.g. 0.5')


def _job(name: str, table, sections: dict, run_overrides: dict, lines: _Lines, where: dict) -> JobConfig:
    t = f'jobs.{name}'
    if not isinstance(table, dict):
        raise ConfigError(f'[{t}] must be a table', key=t, line=lines.of('jobs', name), **where)
    for key, value in table.items():
        if key not in JOB_SCHEMA:
            raise ConfigError(f'unknown key {key!r} in [{t}]', key=f'{t}.{key}', line=lines.of(t, key), **where,
                              hint='known keys of a job: ' + ', '.join(JOB_SCHEMA))
        if not _check_type(value, JOB_SCHEMA[key][0]):
            raise ConfigError(f'{t}.{key} must be a {_type_name(JOB_SCHEMA[key][0])}, not {value!r}',
                              key=f'{t}.{key}', line=lines.of(t, key), **where)
    for key, values in table.get('sweep', {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f'{t}.sweep.{key} must be a non-empty array of values, not {values!r}',
                              key=f'{t}.sweep.{key}', line=lines.of(f'{t}.sweep', key), **where,
                              hint=f'e.g. [{t}.sweep] then {key} = [0.1, 0.01]')
    factory = table.get('factory')
    if not factory:
        raise ConfigError(f'[{t}] needs factory = "module.path:ClassOrFunction"', key=f'{t}.factory',
                          line=lines.of(t), **where, hint='e.g. factory = "jobs.example_job:ExampleJob"')
    if not re.fullmatch(r'[A-Za-z_][\w.]*:[A-Za-z_][\w.]*', factory):
        raise ConfigError(f'{t}.factory = {factory!r} is not "module.path:Name"', key=f'{t}.factory',
                          line=lines.of(t, 'factory'), **where, hint='e.g. factory = "jobs.example_job:ExampleJob"')
    if not re.fullmatch(r'[A-Za-z_][\w\-]*', name):
        raise ConfigError(f'job name {name!r} must be letters, digits, _ or -', key=t, line=lines.of(t), **where)
    package = (table.get('package') or name).lower()
    version = table.get('version') or sections['package']['version']
    run = sections['run']
    limits = {k: table[k] if table.get(k) is not None else run[k] for k in ('cpu', 'memory_gb')}
    _check_limits(limits, where, lines, t)
    limits.update({k: v for k, v in run_overrides.items() if k in limits})
    env = list(dict.fromkeys([*run['env'], *table.get('env', []), *run_overrides.get('env', [])]))
    return JobConfig(
        name=name, factory=factory, args=table.get('args', []), kwargs=table.get('kwargs', {}),
        package=package, version=version, module=module_name(package, version),
        dependencies=[*sections['package']['dependencies'], *table.get('dependencies', [])],
        env=env, line=lines.of(t), factory_line=lines.of(t, 'factory'), sweep=table.get('sweep', {}), **limits)


def secret_name(name: str) -> bool:
    """Names whose values are never printed."""
    return bool(re.search(r'TOKEN|PASSWORD|PASSWD|SECRET|KEY', name, re.IGNORECASE))


def shown_env(names, environ=None) -> dict[str, str]:
    """Env values as they may be printed: secret-looking names masked."""
    environ = os.environ if environ is None else environ
    return {n: ('***' if secret_name(n) else environ.get(n, '<unset>')) for n in names}


def describe(config: Config, jobs=None, environ=None) -> str:
    """The effective configuration as TOML-like text, env values shown with secrets masked."""
    lines = [f'# {config.path}']
    for section in SCHEMA:
        lines.append(f'[{section}]')
        lines += [f'{key} = {value!r}' for key, value in getattr(config, section).items()]
    lines.append(f'# base image used: {config.base_image}')
    for name in jobs or sorted(config.jobs):
        job = config.job(name)
        lines.append(f'[jobs.{name}]  # module {job.module}, cpu {job.cpu}, memory_gb {job.memory_gb}')
        lines.append(f'factory = {job.factory!r}')
        lines.append(f'dependencies = {job.dependencies!r}')
        lines += [f'env.{n} = {v!r}' for n, v in shown_env(job.env, environ).items()]
    return '\n'.join(lines)
