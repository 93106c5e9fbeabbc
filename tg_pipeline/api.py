"""The original's Python API (Packaging, Containering, SSHDocker*, executors) over our doit task graph.

An executor builds the same :class:`~tg_pipeline.workflow.tasks` as ``doit``
does from pipeline.toml, with the job pickled in memory as its payload (keyed
by the payload's hash), and runs its final task through doit. So ``execute()``
twice with an unchanged job rebuilds nothing, exactly like ``doit run_local``.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tg_pipeline import config as config_module
from tg_pipeline.config.schema import RUN_ONLY
from tg_pipeline.errors import ConfigError, InvalidName, PipelineError

if TYPE_CHECKING:
    from tg_pipeline.workflow.context import Context


class Packaging:
    """The job (and any other payload objects) + the source code it needs, as an sdist."""

    def __init__(self, name: str, version: str, payload: dict):
        self.name = name
        self.version = version
        self.payload = dict(payload)
        self.silent = False
        #: pip requirements: a list of strings, or named lists ({'torch': ['torch==2.1']} / [[...], [...]])
        self.dependencies: list | dict = []
        #: folders packaged with the payload; None: the top-level packages its code comes from
        self.source_roots: list | None = None
        #: where the task files and doit's state go (shared with the CLI when it is the same folder)
        self.build_dir = 'build'
        self.package_location: str | None = None

    @property
    def module(self) -> str:
        return config_module.module_name(self.name, self.version)

    def requirements(self) -> list[str]:
        deps = self.dependencies
        if isinstance(deps, dict):
            deps = list(deps.values())
        flat: list[str] = []
        for item in deps:
            flat.extend([item] if isinstance(item, str) else item)
        return flat

    def pickled(self) -> tuple[dict[str, bytes], dict[str, str]]:
        """{resource: bytes} and {module: example} of what was pickled by reference."""
        from tg_pipeline.job.pickling import dumps
        resources, modules = {}, {}
        for key, value in self.payload.items():
            resources[key], found = dumps(value)
            modules.update(found)
        return resources, modules

    def make_package(self) -> Path:
        """Build the sdist (through the doit task graph); return and record its path."""
        _Run(SSHDockerConfig(self, Containering.from_packaging(self), SSHDockerOptions([]))).tasks('sdist')
        location = self.package_location = str(_paths(self).sdist)
        return Path(location)


class Containering:
    """The image of a package: name/tag, base image, registry."""

    def __init__(self, image_name: str, image_tag: str = 'latest'):
        self.image_name = image_name
        self.image_tag = image_tag
        self.silent = False
        self.base_image: str | None = None  # default python:X.Y-slim for this interpreter, or TG_PIPELINE_BASE_IMAGE
        self.registry: str | None = None  # e.g. 'registry.example.com:5000'; needed by RemoteExecutor
        self.build_on: str | None = None  # 'remote': the remote engine builds the dependency image (default 'local')
        self.python_version = '%d.%d' % sys.version_info[:2]
        self.image_id: str | None = None

    @staticmethod
    def from_packaging(packaging: Packaging) -> 'Containering':
        return Containering(packaging.name, packaging.version)

    @property
    def image(self) -> str:
        return f'{self.image_name}:{self.image_tag}'

    def get_remote_name(self) -> str:
        from tg_pipeline.image.registry import remote_reference
        return remote_reference(self.registry or '', self.image)

    def make_container(self, packaging: Packaging) -> str:
        """Build the image (through the doit task graph); return its id."""
        run = _Run(SSHDockerConfig(packaging, self, SSHDockerOptions([])))
        run.tasks('build_image')
        from tg_pipeline.image.build import built_image_id
        image_id = self.image_id = built_image_id(_paths(packaging).image)
        return image_id

    def push(self, packaging: Packaging) -> str:
        _Run(SSHDockerConfig(packaging, self, SSHDockerOptions([]))).tasks('push')
        return self.get_remote_name()


class SSHDockerOptions:
    """How the job runs: the settings of [run] in pipeline.toml, as keywords (``gpus=1``, ``mounts=[...]``; None
    leaves one unset), after the original's positional four: ``env_variables_to_propagate`` (``env``),
    ``cpu_limit`` (``cpu``), ``memory_limit_in_gygabytes`` (``memory_gb``) and ``env_missing``: "error" (the
    default) stops a run before it starts when a variable of ``env_variables_to_propagate`` is not set in this
    process, "ignore" runs without it. ``wait_for_stop=False`` starts the run and returns its run id.

    The keywords are the fields of :class:`tg_pipeline.config.RunSettings`: a new setting there is a keyword
    here; an unknown one is an error naming the known ones."""
    # the original's names of three settings (set with the others, by name, in __init__)
    env_variables_to_propagate: list
    cpu_limit: Any
    memory_limit_in_gygabytes: Any

    def __init__(self, env_variables_to_propagate=(), wait_for_stop: bool = True, cpu_limit=None,
                 memory_limit_in_gygabytes=None, env_missing: str | None = None, **settings):
        known = [f.name for f in dataclasses.fields(config_module.SECTIONS['run']) if f.name != 'env_missing']
        unknown = [name for name in settings if name not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            raise ConfigError(f'SSHDockerOptions got an unknown keyword {unknown[0]!r}', file=config_module.API_ORIGIN,
                              hint=(f'did you mean {close[0]}? ' if close else '') + 'the keywords it takes: '
                              + ', '.join(known))
        legacy = {'env': list(env_variables_to_propagate) or None, 'cpu': cpu_limit,
                  'memory_gb': memory_limit_in_gygabytes}
        for name, value in legacy.items():
            if value is not None and settings.get(name) is not None:
                raise ConfigError(f'SSHDockerOptions got both {_LEGACY_NAMES[name]} and {name}',
                                  file=config_module.API_ORIGIN,
                                  hint=f'give one of them ({name} is {_LEGACY_NAMES[name]})')
            settings[name] = value if value is not None else settings.get(name)
        self.wait_for_stop, self.env_missing = wait_for_stop, env_missing
        for name in known:
            setattr(self, _LEGACY_NAMES.get(name, name), settings.get(name))
        self.env_variables_to_propagate = list(self.env_variables_to_propagate or ())

    def settings(self) -> dict:
        """{field of [run]: value} as given (None: not given)."""
        names = [f.name for f in dataclasses.fields(config_module.SECTIONS['run'])]
        return {name: getattr(self, _LEGACY_NAMES.get(name, name), None) for name in names}


# the settings the original named otherwise (the attribute that holds each)
_LEGACY_NAMES = {'env': 'env_variables_to_propagate', 'cpu': 'cpu_limit', 'memory_gb': 'memory_limit_in_gygabytes'}


def _options_signature() -> inspect.Signature:
    """SSHDockerOptions' signature for help() and editors: the original's positional five, then every field of
    [run] as a keyword."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = list(inspect.signature(SSHDockerOptions.__init__).parameters.values())[:-1]
    fields = [f.name for f in dataclasses.fields(config_module.SECTIONS['run']) if f.name != 'env_missing']
    return inspect.Signature(positional + [inspect.Parameter(name, keyword, default=None) for name in fields])


setattr(SSHDockerOptions.__init__, '__signature__', _options_signature())  # what inspect.signature reads


class SSHDockerConfig:
    def __init__(self, packaging: Packaging, containering: Containering, options: SSHDockerOptions,
                 host: str | None = None, username: str | None = None, port: int | None = None,
                 identity_file: str | None = None, accept_unknown_host_keys: bool = False):
        self.packaging, self.containering, self.options = packaging, containering, options
        self.host, self.username, self.port = host, username, port
        self.identity_file, self.accept_unknown_host_keys = identity_file, accept_unknown_host_keys


def _paths(packaging: Packaging):
    from tg_pipeline.paths import JobPaths
    return JobPaths(Path(packaging.build_dir).resolve(), packaging.name, packaging.module, packaging.version)


class _Run:
    """One doit run of the task graph for one API configuration."""

    def __init__(self, config: SSHDockerConfig, variants=None, swarm: dict | None = None):
        self.config = config
        packaging = config.packaging
        resources, modules = packaging.pickled()
        self.sweeps: dict[str, list[str]] = {}
        if variants is not None:  # a sweep: every variant in the one image, picked by its index
            from tg_pipeline.job.pickling import dumps
            items = list(variants.items()) if isinstance(variants, dict) else \
                [(str(i), v) for i, v in enumerate(variants)]
            if not items:
                raise ConfigError('the executor got no variants', key='variants',
                                  hint='pass a list (or a dict label -> job) of at least one job object')
            resources['variants'], found = dumps(items)
            modules.update(found)
            self.sweeps = {packaging.name: [label for label, _ in items]}
        if 'job' not in resources:
            raise ConfigError("the payload has no 'job' entry", key='payload',
                              hint="create Packaging(name, version, dict(job=your_job))")
        self.job, self.resources = packaging.name, resources
        from tg_pipeline.provenance.notebook import cell_sources  # a job defined in a notebook: its cells are its code
        self.cells = cell_sources({**packaging.payload, **({'variants': variants} if variants is not None else {})})
        self.ctx: Context | None = None  # the last tasks()'s
        self.pipeline_config = pipeline_config(config, _source_roots(packaging, modules), swarm)
        self.variables = {} if config.options.wait_for_stop else {'detach': '1'}

    def tasks(self, step: str):
        """Run ``step`` for the job (and what it depends on); raise the first error."""
        from tg_pipeline.console import Console
        from tg_pipeline.workflow.context import Context
        from tg_pipeline.workflow.main import run_tasks
        # Containering.silent (Packaging.silent for the sdist alone): the build steps print nothing; the job's own
        # output still shows (see Context.run_console)
        quiet = self.config.containering.silent or (step == 'sdist' and self.config.packaging.silent)
        console = Console(quiet=quiet, verbose=bool(self.pipeline_config.docker.verbose))
        ctx = Context(self.pipeline_config, self.variables, {self.job: self.resources}, self.sweeps, capture=True,
                      requested=[step], console=console, cells={self.job: self.cells} if self.cells else {})
        self.ctx = ctx
        code = run_tasks(ctx, [self.job], [f'{step}:{self.job}'], reporter='zero', verbosity=2)
        if ctx.errors:
            raise ctx.errors[0]
        if code != 0:
            raise PipelineError(f'the task {step}:{self.job} failed (doit exit code {code})')
        return ctx.results.get(self.job)


def _source_roots(packaging: Packaging, modules: dict) -> list[Path]:
    if packaging.source_roots is None:
        from tg_pipeline.job.pickling import detect_source_roots
        return detect_source_roots(modules)
    from tg_pipeline.job.pickling import check_modules, check_source_roots
    roots = [Path(r).resolve() for r in packaging.source_roots]
    check_source_roots(roots)
    check_modules(modules, roots)
    return roots


def pipeline_config(config: SSHDockerConfig, roots: list[Path], swarm: dict | None = None):
    """The same validated configuration pipeline.toml gives, from the API's objects (one from_mapping)."""
    packaging, containering, options = config.packaging, config.containering, config.options
    run_only = {f.name for f in dataclasses.fields(config_module.SECTIONS['run'])
                if f.metadata.get('combine') == RUN_ONLY}
    settings = options.settings()
    job = {'factory': 'tg_pipeline.api:payload', 'package': packaging.name, 'version': packaging.version,
           'dependencies': packaging.requirements(), 'image': containering.image,
           **{key: value for key, value in settings.items() if key not in run_only}}
    remote = {'host': config.host or '', 'user': config.username or '', 'port': config.port or 0,
              'identity_file': config.identity_file or '', 'accept_unknown_host_keys': config.accept_unknown_host_keys}
    data = {'package': {'version': packaging.version, 'source_roots': [str(r) for r in roots],
                        'build_dir': str(Path(packaging.build_dir).resolve())},
            'docker': {'base_image': containering.base_image or '',
                       'build_on': getattr(containering, 'build_on', None) or 'local'}, 'remote': remote,
            'run': {key: value for key, value in settings.items() if key in run_only},
            'registry': {'address': containering.registry or ''}, 'swarm': dict(swarm or {}),
            'jobs': {packaging.name: job}}
    try:
        return config_module.from_mapping(data, path=Path.cwd() / '<python api>', root=Path.cwd(),
                                          origin='Python API')
    except InvalidName as e:
        raise _api_name_error(e, config) from None


def _api_name_error(error: InvalidName, config: SSHDockerConfig) -> ConfigError:
    """A bad name or version, said in the Python API's terms (Packaging name/version, Containering image)."""
    from tg_pipeline.config.names import component, proposed_version, reference_problem, valid_job_name
    packaging, containering = config.packaging, config.containering
    reason = error.reason or 'a job name is ASCII letters, digits, "_" or "-", starting with a letter or "_"'
    if error.setting.endswith('.version'):
        setting, hint = 'Packaging.version', f'e.g. Packaging({packaging.name!r}, {error.proposal!r}, payload)'
    elif error.setting.endswith('.image'):
        name, tag = containering.image_name, containering.image_tag
        name = name if not reference_problem(f'{name}:latest') else component(name)
        tag = tag if not reference_problem(f'x:{tag}') else proposed_version(tag)
        setting, hint = 'Containering image (image_name:image_tag)', f'e.g. Containering({name!r}, {tag!r})'
    else:  # the job's name, which is its package's name too
        proposal = component(packaging.name)
        proposal = proposal if valid_job_name(proposal) else error.proposal
        setting, hint = 'Packaging.name', f'e.g. Packaging({proposal!r}, {packaging.version!r}, payload)'
    return InvalidName(f'{setting} {error.value!r} is not valid: {reason}', file=config_module.API_ORIGIN,
                       hint=hint, setting=setting, value=error.value, reason=reason, proposal=error.proposal)


class Executor:
    """Runs the configured job somewhere: subclasses only name their final doit task and their host.

    ``variants`` (a list of jobs, or a dict label -> job) makes a sweep: on one host (LocalExecutor,
    RemoteExecutor) each variant runs in its own container, at most ``max_concurrent`` at a time
    (SSHDockerOptions), each with its own GPUs; on a swarm, one task each. ``execute()`` then returns
    {label: return value}."""

    step: ClassVar[str | None] = None  # the final doit task: run_local ...
    where: ClassVar[str | None] = None  # its host: local ...

    def __init__(self, config: SSHDockerConfig, variants=None):
        self.config = config
        self.variants = variants
        self.last: Any = None  # what the last run gave: a RunResult, a detached run's handle, the attached value
        #: what the last run ran (its record: code, git state, configuration, dependencies, host; see doit show), also
        #: ``self.last.provenance`` of a container run's result
        self.provenance = None

    def _run(self) -> '_Run':
        return _Run(self.config, self.variants)

    def _named(self) -> tuple[str, str]:
        """(the final doit task, its host), as the subclass names them."""
        if self.step is None or self.where is None:
            raise PipelineError(f'{type(self).__name__} names no doit task and no host to run on',
                                hint='use AttachedExecutor, LocalExecutor, RemoteExecutor or SwarmExecutor')
        return self.step, self.where

    def execute(self):
        """Run the job; return its return value (or, not waiting for the stop, the run id)."""
        step, _ = self._named()
        run = self._run()
        try:
            self.last = run.tasks(step)
        finally:
            self.provenance = run.ctx.records.get(run.job) if run.ctx is not None else None
        if hasattr(self.last, 'exit_code'):  # a RunResult
            return self.last.value
        if hasattr(self.last, 'run_id'):  # a detached run's handle
            return self.last.run_id
        return self.last  # an attached run's value

    def get_logs(self, run_id: str | None = None) -> tuple[str, str]:
        """(stdout, stderr) of the job's last run here (or of ``run_id``)."""
        from tg_pipeline.runs import lifecycle

        def logs(backend, scope, paths):
            found, handle = lifecycle.pick(backend, scope, paths, run_id)
            if handle is None:
                return lifecycle.saved_logs(paths, found)
            return tuple(b''.join(backend.log_chunks(handle, stream)) for stream in (1, 2))
        try:
            out, err = self._lifecycle(logs)
        except PipelineError as e:
            raise PipelineError(f'no {self.where} run of {self.config.packaging.name} to show logs of: {e.message}',
                                hint='call execute() first') from None
        return out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace')

    def status(self, run_id: str | None = None) -> list[dict]:
        """The job's runs on that host and collected here: run id, state, version, start time."""
        from tg_pipeline.runs import lifecycle
        return self._lifecycle(lambda b, s, p: lifecycle.status(b, s, p, run_id))

    def stop(self, run_id: str | None = None):
        """Stop a detached run (or the latest running one), collect its output and remove it."""
        from tg_pipeline.runs import lifecycle
        return self._lifecycle(lambda b, s, p: lifecycle.stop(b, s, p, run_id))

    def result(self, run_id: str | None = None):
        """The return value of an ended run (or the latest); raises JobFailed with its traceback."""
        from tg_pipeline.runs import lifecycle
        return self._lifecycle(lambda b, s, p: lifecycle.result(b, s, p, run_id)).value

    def exec(self, command: str, run_id: str | None = None) -> int:
        """Run a shell command line in the job's running container (or ``run_id``'s); print its output; its
        exit code."""
        from tg_pipeline.runs.lifecycle import exec_command
        return self._lifecycle(lambda b, s, p: exec_command(b, s, p, run_id, command))

    def _lifecycle(self, function):
        from tg_pipeline.runs import backend_on
        from tg_pipeline.runs.lifecycle import Scope
        if self.where == 'attached':
            raise PipelineError(f'{type(self).__name__} keeps no logs: the job ran in this process')
        _, where = self._named()
        run = self._run()
        config, job = run.pipeline_config, run.job
        with backend_on(config, where) as backend:
            return function(backend, Scope(job, config.project), _paths(self.config.packaging).runs(where))


class AttachedExecutor(Executor):
    """In this process: the quickest check that the job works (and survives pickling)."""
    step = 'run_attached'
    where = 'attached'


class LocalExecutor(Executor):
    """In the local Docker engine."""
    step = 'run_local'
    where = 'local'


class RemoteExecutor(Executor):
    """In the Docker engine of ``config.host``, over SSH."""
    step = 'run_remote'
    where = 'remote'


class SwarmExecutor(Executor):
    """On Docker Swarm, one task per variant: ``SwarmExecutor(config, [job_a, job_b, ...])`` (or a dict
    label -> job; without variants, the payload's job once). ``execute()`` returns {label: return value}.
    ``swarm`` holds [swarm] settings: manager ('local' or 'remote': config.host), max_concurrent,
    cpu_reservation, memory_reservation_gb, constraints, schedule_timeout."""
    step = 'run_swarm'
    where = 'swarm'

    def __init__(self, config: SSHDockerConfig, variants=None, **swarm):
        super().__init__(config, variants)
        self.swarm = swarm

    def _run(self) -> '_Run':
        return _Run(self.config, self.variants, self.swarm)


SSHAttachedExecutor, SSHLocalExecutor, SSHRemoteExecutor = AttachedExecutor, LocalExecutor, RemoteExecutor


def install_package_and_get_loader(path, silent: bool = False, target: str | None = None):
    """pip-install the sdist at ``path`` and return its ``EntryPoint`` (``load_resource(name)``).

    With ``target``, install into that folder (added to ``sys.path``) instead of this environment.
    """
    path = Path(path)
    with tarfile.open(path) as tar:
        module = next(Path(n).parts[1] for n in tar.getnames()
                      if len(Path(n).parts) == 3 and Path(n).name == '__init__.py')
    command = [sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check', str(path)]
    if target:
        command += ['--target', str(target), '--no-deps']
    if silent:
        command.append('-q')
    result = subprocess.run(command, capture_output=silent, text=True)
    if result.returncode != 0:
        from tg_pipeline.errors import CommandError
        raise CommandError(f'pip could not install {path.name}', command=' '.join(command),
                           exit_code=result.returncode, output=(result.stdout or '') + (result.stderr or ''))
    if target and str(target) not in sys.path:
        sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return importlib.import_module(module).EntryPoint()
