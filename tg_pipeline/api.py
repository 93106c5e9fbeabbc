"""The original's Python API (Packaging, Containering, SSHDocker*, executors) over our doit task graph.

An executor builds the same :class:`~tg_pipeline.tasks.Pipeline` as ``doit``
does from pipeline.toml, with the job pickled in memory as its payload (keyed
by the payload's hash), and runs its final task through doit. So ``execute()``
twice with an unchanged job rebuilds nothing, exactly like ``doit run_local``.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from tg_pipeline import config as config_module
from tg_pipeline.errors import ConfigError, PackagingError, PipelineError


class Packaging:
    """The job (and any other payload objects) + the source code it needs, as an sdist."""

    def __init__(self, name: str, version: str, payload: dict):
        self.name = name
        self.version = version
        self.payload = dict(payload)
        self.silent = False
        #: pip requirements: a list of strings, or named lists ({'torch': ['torch==2.1']} / [[...], [...]])
        self.dependencies = []
        #: folders packaged with the payload; None: the top-level packages its code comes from
        self.source_roots = None
        #: where the task files and doit's state go (shared with the CLI when it is the same folder)
        self.build_dir = 'build'
        self.package_location = None

    @property
    def module(self) -> str:
        return config_module.module_name(self.name, self.version)

    def requirements(self) -> list[str]:
        deps = self.dependencies
        if isinstance(deps, dict):
            deps = list(deps.values())
        flat = []
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
        self.package_location = str(_paths(self).sdist)
        return Path(self.package_location)


class Containering:
    """The image of a package: name/tag, base image, registry."""

    def __init__(self, image_name: str, image_tag: str = 'latest'):
        self.image_name = image_name
        self.image_tag = image_tag
        self.silent = False
        self.base_image = None  # default python:X.Y-slim for this interpreter, or TG_PIPELINE_BASE_IMAGE
        self.registry = None  # e.g. '127.0.0.1:5000'; needed by RemoteExecutor
        self.python_version = '%d.%d' % sys.version_info[:2]
        self.image_id = None

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
        from tg_pipeline.image.build import recorded_image
        self.image_id = recorded_image(_paths(packaging).image)['image_id']
        return self.image_id

    def push(self, packaging: Packaging) -> str:
        _Run(SSHDockerConfig(packaging, self, SSHDockerOptions([]))).tasks('push')
        return self.get_remote_name()


class SSHDockerOptions:
    def __init__(self, env_variables_to_propagate=(), wait_for_stop: bool = True, cpu_limit=None,
                 memory_limit_in_gygabytes=None):
        self.env_variables_to_propagate = list(env_variables_to_propagate)
        self.wait_for_stop = wait_for_stop
        self.cpu_limit = cpu_limit
        self.memory_limit_in_gygabytes = memory_limit_in_gygabytes


class SSHDockerConfig:
    def __init__(self, packaging: Packaging, containering: Containering, options: SSHDockerOptions,
                 host: str | None = None, username: str | None = None, port: int | None = None,
                 identity_file: str | None = None, accept_unknown_host_keys: bool = False):
        self.packaging, self.containering, self.options = packaging, containering, options
        self.host, self.username, self.port = host, username, port
        self.identity_file, self.accept_unknown_host_keys = identity_file, accept_unknown_host_keys


def _paths(packaging: Packaging):
    from tg_pipeline.tasks import JobPaths
    job = config_module.JobConfig(name=packaging.name, factory='', args=[], kwargs={}, package=packaging.name,
                                  version=packaging.version, module=packaging.module, dependencies=[], env=[],
                                  cpu=0, memory_gb=0)
    return JobPaths(Path(packaging.build_dir).resolve(), job)


def detect_source_roots(modules: dict[str, str]) -> list[Path]:
    """The folders of the top-level packages that the payload's by-reference code comes from."""
    from tg_pipeline.job.pickling import BY_VALUE, _installed_dirs, _under
    installed = _installed_dirs()
    roots = []
    for name in sorted(modules):
        top = name.split('.')[0]
        if name == '__main__' or name in BY_VALUE or top in sys.builtin_module_names \
                or top in getattr(sys, 'stdlib_module_names', ()):
            continue
        module = sys.modules.get(top)
        file = getattr(module, '__file__', None)
        if not file or _under(Path(file).resolve(), installed):
            continue
        if not file.endswith('__init__.py'):
            raise PackagingError(
                f'the job uses {modules[name]} from module {name!r} ({file}), a single file outside any package: '
                f'it cannot travel as a source root',
                hint=f'move it into a package folder (with __init__.py) and set packaging.source_roots to that folder')
        root = Path(file).resolve().parent
        if root not in roots:
            roots.append(root)
    return roots


class _Run:
    """One doit run of the task graph for one API configuration."""

    def __init__(self, config: SSHDockerConfig, variants=None, swarm: dict | None = None):
        self.config = config
        packaging, containering, options = config.packaging, config.containering, config.options
        resources, modules = packaging.pickled()
        self.sweeps = {}
        if variants is not None:  # one swarm task per variant, all of them in the one image
            from tg_pipeline.job.pickling import dumps
            items = list(variants.items()) if isinstance(variants, dict) else \
                [(str(i), v) for i, v in enumerate(variants)]
            if not items:
                raise ConfigError('SwarmExecutor got no variants', key='variants',
                                  hint='pass a list (or a dict label -> job) of at least one job object')
            resources['variants'], found = dumps(items)
            modules.update(found)
            self.sweeps = {packaging.name: [label for label, _ in items]}
        if packaging.source_roots is None:
            roots = detect_source_roots(modules)
        else:
            roots = [Path(r).resolve() for r in packaging.source_roots]
            from tg_pipeline.job.pickling import check_modules, check_source_roots
            check_source_roots(roots)
            check_modules(modules, roots)
        if 'job' not in resources:
            raise ConfigError("the payload has no 'job' entry", key='payload',
                              hint="create Packaging(name, version, dict(job=your_job))")
        name = packaging.name
        job = config_module.JobConfig(
            name=name, factory='', args=[], kwargs={}, package=name, version=packaging.version,
            module=packaging.module, dependencies=packaging.requirements(),
            env=list(options.env_variables_to_propagate), cpu=float(options.cpu_limit or 0),
            memory_gb=float(options.memory_limit_in_gygabytes or 0), image=containering.image)
        self.job = name
        self.pipeline_config = config_module.Config(
            path=Path.cwd() / '<python api>', root=Path.cwd(),
            package={'version': packaging.version, 'source_roots': [str(r) for r in roots],
                     'dependencies': [], 'build_dir': str(Path(packaging.build_dir).resolve())},
            docker={'base_image': os.environ.get(config_module.BASE_IMAGE_ENV) or containering.base_image or '',
                    'image_prefix': ''},
            run={key: default for key, (_, default) in config_module.SCHEMA['run'].items()},
            remote={'host': config.host or '', 'user': config.username or '', 'port': config.port or 0,
                    'identity_file': config.identity_file or '',
                    'accept_unknown_host_keys': config.accept_unknown_host_keys, 'connect_timeout': 15,
                    'transfer': ''},
            registry={'address': containering.registry or '', 'username_env': '', 'password_env': ''},
            jobs={name: job},
            swarm={**{k: d for k, (_, d) in config_module.SCHEMA['swarm'].items()}, **(swarm or {})})
        self.variables = {} if options.wait_for_stop else {'detach': '1'}
        self.resources = resources

    def tasks(self, step: str):
        """Run ``step`` for the job (and what it depends on); raise the first error."""
        from doit.cmd_base import ModuleTaskLoader
        from doit.doit_cmd import DoitMain
        from tg_pipeline.tasks import Pipeline
        pipeline = Pipeline(self.pipeline_config, [self.job], self.variables, {self.job: self.resources},
                            capture=True, sweeps=self.sweeps)
        functions = pipeline.doit_tasks()
        self.pipeline_config.build_dir.mkdir(parents=True, exist_ok=True)
        functions['DOIT_CONFIG'] = {'dep_file': str(self.pipeline_config.build_dir / '.doit.db'),
                                    'reporter': 'zero', 'verbosity': 2}
        if self.config.containering.silent:
            functions = _silence_build(functions)
        code = DoitMain(ModuleTaskLoader(functions)).run([f'{step}:{self.job}'])
        if pipeline.errors:
            raise pipeline.errors[0]
        if code != 0:
            raise PipelineError(f'the task {step}:{self.job} failed (doit exit code {code})')
        return pipeline.results.get(self.job, {})


def _silence_build(functions: dict) -> dict:
    """With Containering.silent, the build/push steps print nothing; the job's own output still shows."""
    import contextlib
    import io
    wrapped = dict(functions)
    for step in ('task_build_image', 'task_push', 'task_sdist'):
        original = functions[step]

        def creator(original=original):
            for task in original():
                actions = []
                for action in task['actions']:
                    def quiet(action=action):
                        with contextlib.redirect_stdout(io.StringIO()):
                            return action()
                    actions.append(quiet)
                yield dict(task, actions=actions)
        creator.__doc__ = original.__doc__
        wrapped[step] = creator
    return wrapped


class Executor:
    """Runs the configured job somewhere: subclasses only name their final doit task."""

    step = None
    where = None

    def __init__(self, config: SSHDockerConfig):
        self.config = config
        self.last = None

    def execute(self):
        """Run the job; return its return value (or, not waiting for the stop, the run id)."""
        self.last = _Run(self.config).tasks(self.step)
        if not self.config.options.wait_for_stop and 'run_id' in self.last and 'value' not in self.last:
            return self.last['run_id']
        return self.last.get('value')

    def get_logs(self, run_id: str | None = None) -> tuple[str, str]:
        """(stdout, stderr) of the job's last run here (or of ``run_id``)."""
        from tg_pipeline.runs.lifecycle import get_logs
        log_dir = _paths(self.config.packaging).runs / self.where
        with self._client() as client:
            found, _, out, err = get_logs(client, self.config.packaging.name, log_dir, run_id)
        if not found:
            raise PipelineError(f'no {self.where} run of {self.config.packaging.name} to show logs of',
                                hint='call execute() first')
        return out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace')

    def status(self, run_id: str | None = None) -> list[dict]:
        """The job's runs on that host and collected here: run id, state, version, start time."""
        from tg_pipeline.runs.lifecycle import status
        return self._lifecycle(status, run_id)

    def stop(self, run_id: str | None = None) -> dict:
        """Stop a detached run (or the latest running one), collect its output and remove it."""
        from tg_pipeline.runs.lifecycle import stop
        return self._lifecycle(stop, run_id)

    def result(self, run_id: str | None = None):
        """The return value of an ended run (or the latest); raises JobFailed with its traceback."""
        from tg_pipeline.runs.lifecycle import result
        return self._lifecycle(result, run_id).get('value')

    def _lifecycle(self, function, run_id):
        log_dir = _paths(self.config.packaging).runs / self.where
        with self._client() as client:
            return function(client, self.config.packaging.name, log_dir, self.where, run_id)

    def _client(self):
        raise PipelineError(f'{type(self).__name__} keeps no logs: the job ran in this process')


class AttachedExecutor(Executor):
    """In this process: the quickest check that the job works (and survives pickling)."""
    step = 'run_attached'
    where = 'attached'


class LocalExecutor(Executor):
    """In the local Docker engine."""
    step = 'run_local'
    where = 'local'

    def _client(self):
        import contextlib
        from tg_pipeline import engine
        return contextlib.nullcontext(engine.local())


class RemoteExecutor(Executor):
    """In the Docker engine of ``config.host``, over SSH."""
    step = 'run_remote'
    where = 'remote'

    def _client(self):
        import contextlib
        from tg_pipeline.ssh import Remote, RemoteTarget
        remote = Remote(RemoteTarget.from_config(_Run(self.config).pipeline_config.remote))

        @contextlib.contextmanager
        def client():
            with remote:
                yield remote.docker
        return client()


class SwarmExecutor(Executor):
    """On Docker Swarm, one task per variant: ``SwarmExecutor(config, [job_a, job_b, ...])`` (or a dict
    label -> job; without variants, the payload's job once). ``execute()`` returns {label: return value}.
    ``swarm`` holds [swarm] settings: manager ('local' or 'remote': config.host), max_concurrent,
    cpu_reservation, memory_reservation_gb, constraints, schedule_timeout."""
    step = 'run_swarm'
    where = 'swarm'

    def __init__(self, config: SSHDockerConfig, variants=None, **swarm):
        super().__init__(config)
        self.variants, self.swarm = variants, swarm

    def execute(self):
        self.last = _Run(self.config, self.variants, self.swarm).tasks(self.step)
        return self.last.get('values', self.last.get('run_id'))

    def _swarm(self, name: str, run_id):
        from tg_pipeline import run_swarm
        from tg_pipeline.tasks import Pipeline
        run = _Run(self.config, self.variants, self.swarm)
        with Pipeline(run.pipeline_config, [run.job]).swarm_manager() as (client, where):
            return getattr(run_swarm, name)(client, self.config.packaging.name,
                                            _paths(self.config.packaging).runs / 'swarm', where, run_id)

    def status(self, run_id: str | None = None) -> list[dict]:
        return self._swarm('status', run_id)

    def stop(self, run_id: str | None = None) -> dict:
        return self._swarm('stop', run_id)

    def result(self, run_id: str | None = None) -> dict:
        """{label: return value} of an ended swarm run; JobFailed naming the variants that failed."""
        return self._swarm('result', run_id).get('values')


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
