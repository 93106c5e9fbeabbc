"""The doit task graph, built from pipeline.toml. dodo.py only calls :func:`dodo_tasks`.

Tasks are per job, as doit sub-tasks ``STEP:JOB`` (``doit run_local:ExampleJob``
or ``doit run_local job=ExampleJob``)::

    serialize -> sdist -> build_image -> run_local
    dockerfile ------------^      `---> push -> run_remote
    serialize -> run_attached

Each action is a thin wrapper over a library function that works without doit.
Step modules are imported inside the actions, so listing tasks and checking
that nothing changed stays cheap.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from tg_pipeline import config as config_module
from tg_pipeline.errors import PipelineError, report
from tg_pipeline.package.sdist import runtime_files, source_files

# (step, one-line doc) in graph order; the docs show in `doit list`
STEPS = {
    'serialize': 'pickle the job object (cloudpickle) into its payload file',
    'sdist': 'package source roots + payload as a reproducible sdist named name__version',
    'dockerfile': 'render Dockerfile + requirements.txt from templates/*.j2',
    'build_image': 'build the job image with the Docker SDK (skipped while the image is unchanged)',
    'run_attached': 'run the job in this process, loaded back from its payload',
    'run_local': 'run the job image on the local Docker engine, streaming its output',
    'push': 'tag and push the job image to the [registry] (skipped while it has that digest)',
    'run_remote': 'run the job image on the [remote] Docker host over SSH, streaming its output',
    'run_swarm': 'run the image on Docker Swarm as a replicated job: one task per sweep variant',
    'status': 'list the job\'s runs and their state (where=local|remote|swarm, run_id=...)',
    'logs': 'print a run\'s whole output; follow=1 re-attaches until it ends (where=, run_id=)',
    'stop': 'stop a running run (the latest, or run_id=...), collect and remove it (where=)',
    'result': 'print the return value of an ended run, collecting it (where=, run_id=)',
}
LIFECYCLE = ('status', 'logs', 'stop', 'result')
TEMPLATE_FILES = ('pyproject.toml.j2',)


class JobPaths:
    def __init__(self, build_dir: Path, job: config_module.JobConfig):
        self.dir = build_dir / job.name
        self.payload = self.resource('job')
        self.context = self.dir / 'context'
        self.sdist = self.context / f'{job.module}-{job.version}.tar.gz'
        self.dockerfile = self.context / 'Dockerfile'
        self.requirements = self.context / 'requirements.txt'
        self.image = self.dir / 'image.json'
        self.push = self.dir / 'push.json'
        self.runs = self.dir / 'runs'

    def resource(self, name: str) -> Path:
        return self.dir / 'resources' / f'{name}.pkl'


class Pipeline:
    """Task dicts for the jobs of one pipeline.toml (or of one Python API call).

    ``payloads`` (job -> {resource name: pickled bytes}) replaces the ``serialize`` step
    of those jobs by a write of bytes pickled in memory, keyed by their hash. With
    ``capture``, errors are kept in ``errors`` for the caller instead of printed.
    """

    def __init__(self, config: config_module.Config, jobs: list[str] | None = None,
                 variables: dict | None = None, payloads: dict | None = None, capture: bool = False,
                 sweeps: dict | None = None):
        self.config = config
        self.variables = variables or {}
        self.payloads = payloads or {}
        self.sweeps = sweeps or {}  # job -> variant labels, for payloads with a 'variants' resource
        self.capture = capture
        self.results: dict[str, dict] = {}
        self.errors: list[BaseException] = []
        self.selected = [config.job(j).name for j in jobs] if jobs else sorted(config.jobs)
        self._sources = None

    # --- helpers -------------------------------------------------------------------------
    def action(self, function, *args):
        """A doit python-action: our errors become TaskFailed with ERROR/TIP text, not a traceback."""
        def action():
            try:
                function(*args)
            except PipelineError as e:
                self.errors.append(e)
                if not self.capture:
                    report(e)
                return TaskFailed(e.message.splitlines()[0])
            except KeyboardInterrupt as e:  # what happened to the run was printed where it was handled
                self.errors.append(e)
                return TaskFailed('interrupted (Ctrl-C)')
            except Exception as e:
                if not self.capture:
                    raise
                self.errors.append(e)
                return TaskFailed(f'{type(e).__name__}: {e}')
        action.__name__ = getattr(function, '__name__', 'action')
        return action

    def resource_names(self, job: str) -> list[str]:
        if job in self.payloads:
            return sorted(self.payloads[job])
        return ['job', 'variants'] if self.config.job(job).sweep else ['job']

    def variant_labels(self, job: str) -> list[str]:
        """The labels of the job's variants, one swarm task each (one variant: the job itself)."""
        if job in self.payloads:
            return self.sweeps.get(job) or ['job']
        j = self.config.job(job)
        return [label for label, _ in j.variants()] if j.sweep else ['job']

    def flag(self, name: str) -> bool:
        """A yes/no command-line variable: detach=1, follow=true ..."""
        return str(self.variables.get(name, '')).lower() in ('1', 'true', 'yes')

    def detach(self) -> bool:
        return self.flag('detach')

    def paths(self, job: str) -> JobPaths:
        return JobPaths(self.config.build_dir, self.config.job(job))

    @property
    def sources(self) -> list[str]:
        if self._sources is None:
            self._sources = [str(p) for p in source_files(self.config.source_roots)]
        return self._sources

    def image_tag(self, job: str) -> str:
        from tg_pipeline.image.build import image_tag
        j = self.config.job(job)
        return j.image or image_tag(j.package, j.version, self.config.docker['image_prefix'])

    def run_spec(self, job: str):
        from tg_pipeline.image.build import recorded_image
        from tg_pipeline.runs.container import RunSpec
        j = self.config.job(job)
        record = recorded_image(self.paths(job).image) or {}
        return RunSpec(image=record.get('image_id', self.image_tag(job)), job=j.name, package=j.package,
                       version=j.version, module=j.module, env_names=j.env, cpu=j.cpu, memory_gb=j.memory_gb)

    # --- actions -------------------------------------------------------------------------
    def do_serialize(self, job: str):
        from tg_pipeline.job.pickling import check_source_roots, make_job, serialize, write_if_changed
        if job in self.payloads:
            for name, data in self.payloads[job].items():
                write_if_changed(self.paths(job).resource(name), data)
            return
        j = self.config.job(job)
        check_source_roots(self.config.source_roots, str(self.config.path))
        where = (self.config.root, str(self.config.path), f'jobs.{job}.factory', j.factory_line)
        variants = [(label, make_job(j.factory, j.args, kwargs, *where)) for label, kwargs in j.variants()]
        payload_job = variants[0][1] if variants else make_job(j.factory, j.args, j.kwargs, *where)
        serialize(payload_job, self.paths(job).payload, self.config.source_roots)
        if variants:  # every variant in the one image; a swarm task picks its own by its slot
            serialize(variants, self.paths(job).resource('variants'), self.config.source_roots)

    def do_sdist(self, job: str):
        from tg_pipeline.job.checks import check_imports
        from tg_pipeline.package.sdist import make_sdist
        j, p = self.config.job(job), self.paths(job)
        names = self.resource_names(job)
        check_imports(job, [p.resource(name) for name in names], j.dependencies, self.config.source_roots)
        resources = {name: p.resource(name).read_bytes() for name in names}
        path = make_sdist(p.context, j.package, j.version, j.module, self.config.source_roots, resources,
                          j.dependencies)
        for stale in p.context.glob('*.tar.gz'):  # an old name must not bloat the build context
            if stale != path:
                stale.unlink()

    def do_dockerfile(self, job: str):
        from tg_pipeline.package.dockerfile import make_dockerfile
        make_dockerfile(self.paths(job).context, **self.dockerfile_values(job))

    def dockerfile_values(self, job: str) -> dict:
        j = self.config.job(job)
        return dict(job=j.name, package=j.package, version=j.version, module=j.module,
                    base_image=self.config.base_image, dependencies=j.dependencies)

    def rendered_values(self, job: str) -> dict:
        from tg_pipeline.package.dockerfile import render_values
        return render_values(**self.dockerfile_values(job))

    def do_build_image(self, job: str):
        from tg_pipeline import engine
        from tg_pipeline.image.build import build_image
        from tg_pipeline.job.checks import check_python_version
        p = self.paths(job)
        check_python_version(job, [p.resource(name).read_bytes() for name in self.resource_names(job)],
                             self.config.base_image, engine.local(), self.config.build_dir / 'base_python.json')
        build_image(p.context, self.image_tag(job), p.image)

    def do_run_attached(self, job: str):
        from tg_pipeline.runs.attached import run_attached
        self.finished(job, {'value': run_attached(self.paths(job).payload, job)})

    def do_run_local(self, job: str):
        from tg_pipeline.runs.container import run_local
        self.finished(job, run_local(self.run_spec(job), log_dir=self.paths(job).runs / 'local',
                                     detach=self.detach(), on_interrupt=self.config.run['on_interrupt']))

    def finished(self, job: str, result: dict):
        """Keep a run's result for the Python API; tell the CLI user where it is."""
        self.results[job] = result
        if result.get('value') is not None and not self.capture:
            print(f'Result: {result["value"]!r}')
        if result.get('run_dir') and not self.capture:
            print(f'Run {result["run_id"]}: return value, output folder and logs in {result["run_dir"]}')

    def registry_auth(self):
        from tg_pipeline.image.registry import auth_config
        return auth_config(self.config.registry)

    def remote_reference(self, job: str) -> str:
        """The image's name on the remote: in the registry, or as here when sent over SSH."""
        if self.transfer() == 'ssh':
            return self.image_tag(job)
        from tg_pipeline.image.registry import remote_reference
        return remote_reference(self.config.registry['address'], self.image_tag(job))

    def transfer(self) -> str:
        return self.config.remote['transfer'] or ('registry' if self.config.registry['address'] else 'ssh')

    def do_push(self, job: str):
        from tg_pipeline.image.build import recorded_image
        from tg_pipeline.image.registry import push
        push(recorded_image(self.paths(job).image)['image_id'], self.remote_reference(job), self.paths(job).push,
             auth=self.registry_auth())

    def push_current(self, job: str) -> bool:
        from tg_pipeline.image.registry import push_up_to_date
        return push_up_to_date(self.paths(job).push, self.paths(job).image, auth=self.registry_auth())

    def remote_target(self):
        from tg_pipeline.ssh import RemoteTarget
        return RemoteTarget.from_config(self.config.remote)

    def do_run_remote(self, job: str):
        from tg_pipeline.image.build import recorded_image
        from tg_pipeline.runs.remote import run_remote
        self.finished(job, run_remote(self.run_spec(job), self.remote_target(), self.remote_reference(job),
                                      recorded_image(self.paths(job).image)['image_id'], auth=self.registry_auth(),
                                      log_dir=self.paths(job).runs / 'remote', detach=self.detach(),
                                      transfer=self.transfer(), on_interrupt=self.config.run['on_interrupt']))

    def where(self) -> str:
        where = str(self.variables.get('where') or 'local')
        if where not in ('local', 'remote', 'swarm'):
            from tg_pipeline.errors import ConfigError
            raise ConfigError(f'where={where} is not local, remote or swarm', key='where',
                              hint='where=local (the default), where=remote or where=swarm')
        return where

    @contextlib.contextmanager
    def swarm_manager(self):
        """(docker client, description) of the swarm manager: this engine, or the [remote] one."""
        from tg_pipeline import engine
        from tg_pipeline.ssh import Remote
        from tg_pipeline.runs.swarm import reach_nodes
        if not self.config.remote['host']:
            yield engine.local(), 'swarm local'
            return
        with Remote(self.remote_target()) as remote:  # the manager, or a node whose leftovers we clear
            if self.config.swarm['manager'] == 'local':
                manager, where, other = engine.local(), 'swarm local', remote.docker
            else:
                manager, where, other = remote.docker, f'swarm {remote.name}', engine.local()
            reach_nodes(manager, [other])
            yield manager, where

    def swarm_finished(self, job: str, summary: dict):
        self.results[job] = summary
        if not self.capture:
            from tg_pipeline.runs.swarm import print_results
            print_results(summary)

    def do_run_swarm(self, job: str):
        from tg_pipeline.runs.swarm import SwarmOptions, run_swarm
        spec = self.run_spec(job)
        with self.swarm_manager() as (client, where):
            summary = run_swarm(client, spec, self.swarm_reference(job), self.variant_labels(job),
                                SwarmOptions.from_config(self.config.swarm), where,
                                self.paths(job).runs / 'swarm', silent=self.capture, detach=self.detach(),
                                on_interrupt=self.config.run['on_interrupt'])
        if 'variants' in summary:
            self.swarm_finished(job, summary)
        else:
            self.results[job] = summary

    def swarm_reference(self, job: str) -> str:
        from tg_pipeline.image.registry import remote_reference
        if not self.config.registry['address']:
            from tg_pipeline.errors import ConfigError
            raise ConfigError('run_swarm needs a [registry] address: every node pulls the image from there',
                              key='registry.address', hint='set address in [registry] of pipeline.toml')
        return remote_reference(self.config.registry['address'], self.image_tag(job))

    @contextlib.contextmanager
    def host(self):
        """(docker client, description) of the engine ``where=`` names (for swarm: its manager)."""
        if self.where() == 'swarm':
            with self.swarm_manager() as manager:
                yield manager
            return
        if self.where() == 'local':
            from tg_pipeline import engine
            yield engine.local(), 'local'
            return
        from tg_pipeline.ssh import Remote
        with Remote(self.remote_target()) as remote:
            yield remote.docker, f'remote {remote.name}'

    def do_lifecycle(self, job: str, step: str):
        """status / logs / stop / result of a run, from the module that knows that kind of run."""
        from tg_pipeline import lifecycle, run_swarm
        swarm = self.where() == 'swarm'
        kind, finished = (run_swarm, self.swarm_finished) if swarm else (lifecycle, self.finished)
        run_id = self.variables.get('run_id') or None
        log_dir = self.paths(job).runs / self.where()
        with self.host() as (client, where):
            if step == 'status':
                kind.status(client, job, log_dir, where, run_id)
            elif step == 'stop':
                kind.stop(client, job, log_dir, where, run_id)
            elif step == 'logs':
                result = kind.print_logs(client, job, log_dir, where, run_id, follow=self.flag('follow'))
                if 'run_dir' in result:  # followed to its end: collected like an attached run
                    finished(job, result)
            else:
                result = kind.result(client, job, log_dir, where, run_id)
                finished(job, result)
                if not swarm and result.get('value') is None and not self.capture:
                    print('Result: None')

    def do_cleanup(self):
        from tg_pipeline import lifecycle
        days = self.variables.get('days', '7')
        try:
            days = float(days)
        except ValueError:
            from tg_pipeline.errors import ConfigError
            raise ConfigError(f'days={days} is not a number', key='days', hint='e.g. days=7 (days=0: all ended runs)')
        with self.host() as (client, where):
            lifecycle.cleanup(client, days, lambda job: self.config.build_dir / job / 'runs' / self.where(), where)

    def do_show_config(self):
        from tg_pipeline.config import describe
        print(describe(self.config, self.selected))

    def do_check_remote(self):
        from tg_pipeline.preflight import check_remote
        failed = check_remote(self.remote_target(), self.config.registry['address'], self.registry_auth())
        if failed:
            from tg_pipeline.errors import PipelineError
            raise PipelineError(f'{failed} preflight check(s) failed (see the TIP lines above)')

    def image_current(self, job: str) -> bool:
        from tg_pipeline.image.build import image_up_to_date
        return image_up_to_date(self.paths(job).image)

    # --- task dicts ----------------------------------------------------------------------
    def job_tasks(self, job: str) -> dict[str, dict]:
        """step -> doit task dict (without basename) for one job."""
        j, p = self.config.job(job), self.paths(job)
        from tg_pipeline import templates
        template_files = [str(f) for f in templates.files() if f.name in TEMPLATE_FILES]
        dockerfile_template = [str(f) for f in templates.files() if f.name == 'Dockerfile.j2']
        resources = [str(p.resource(name)) for name in self.resource_names(job)]
        return {
            'serialize': self.serialize_task(job),
            'sdist': dict(
                actions=[self.action(self.do_sdist, job)], targets=[str(p.sdist)],
                file_dep=[*resources, *self.sources, *template_files, *map(str, runtime_files())],
                uptodate=[config_changed({'module': j.module, 'deps': j.dependencies,
                                          'roots': self.config.package['source_roots']})]),
            'dockerfile': dict(
                actions=[self.action(self.do_dockerfile, job)], targets=[str(p.dockerfile), str(p.requirements)],
                file_dep=dockerfile_template, uptodate=[config_changed(self.rendered_values(job))]),
            'build_image': dict(
                actions=[self.action(self.do_build_image, job)], targets=[str(p.image)],
                file_dep=[str(p.dockerfile), str(p.requirements), str(p.sdist)],
                uptodate=[lambda: self.image_current(job)], verbosity=2),
            'run_attached': dict(
                actions=[self.action(self.do_run_attached, job)], task_dep=[f'serialize:{job}'], verbosity=2),
            'run_local': dict(
                actions=[self.action(self.do_run_local, job)], task_dep=[f'build_image:{job}'], verbosity=2),
            'run_swarm': dict(
                actions=[self.action(self.do_run_swarm, job)], task_dep=[f'push:{job}'], verbosity=2),
            'push': dict(
                actions=[self.action(self.do_push, job)], targets=[str(p.push)], file_dep=[str(p.image)],
                uptodate=[lambda: self.push_current(job)], verbosity=2),
            'run_remote': dict(
                actions=[self.action(self.do_run_remote, job)], verbosity=2,
                task_dep=[f'push:{job}' if self.transfer() == 'registry' else f'build_image:{job}']),
            **{step: dict(actions=[self.action(self.do_lifecycle, job, step)], verbosity=2, uptodate=[False])
               for step in LIFECYCLE},
        }

    def serialize_task(self, job: str) -> dict:
        p = self.paths(job)
        targets = [str(p.resource(name)) for name in self.resource_names(job)]
        if job in self.payloads:  # pickled in memory already: up to date while the bytes are the same
            import hashlib
            key = {name: hashlib.sha256(data).hexdigest() for name, data in self.payloads[job].items()}
            return dict(actions=[self.action(self.do_serialize, job)], targets=targets,
                        uptodate=[config_changed(key)])
        return dict(actions=[self.action(self.do_serialize, job)], targets=targets, file_dep=self.sources,
                    uptodate=[config_changed(self.config.job(job).fingerprint())])

    def all_tasks(self) -> dict[str, list[dict]]:
        """step -> sub-task dicts for every selected job."""
        steps: dict[str, list[dict]] = {s: [] for s in STEPS}
        for job in self.selected:
            for step, task in self.job_tasks(job).items():
                steps[step].append(dict(task, name=job, doc=f'{STEPS[step]} [{job}]'))
        return steps

    def doit_tasks(self) -> dict:
        """``task_*`` functions for a dodo module's globals."""
        steps = self.all_tasks()
        functions = {}
        for step, subtasks in steps.items():
            def creator(subtasks=subtasks):
                yield from (dict(t) for t in subtasks)  # doit rewrites 'name' in what it gets
            creator.__doc__ = STEPS[step]
            functions[f'task_{step}'] = creator

        def task_graph():
            """write the task graph as build/graph.dot (and .png where graphviz is installed)"""
            from tg_pipeline.graph import write_graph
            out = self.config.build_dir / 'graph.dot'
            return {'actions': [self.action(write_graph, steps, out)], 'verbosity': 2, 'uptodate': [False]}
        functions['task_graph'] = task_graph

        def task_check_remote():
            """preflight of the remote: SSH login, Docker there, registry push here and pull there"""
            return {'actions': [self.action(self.do_check_remote)], 'verbosity': 2, 'uptodate': [False]}
        functions['task_check_remote'] = task_check_remote

        def task_cleanup():
            """remove ended runs older than days=N (default 7) from the host (where=local|remote)"""
            return {'actions': [self.action(self.do_cleanup)], 'verbosity': 2, 'uptodate': [False]}
        functions['task_cleanup'] = task_cleanup

        def task_config():
            """print the effective configuration (secret-looking env values as ***)"""
            return {'actions': [self.action(self.do_show_config)], 'verbosity': 2, 'uptodate': [False]}
        functions['task_config'] = task_config
        return functions


def command_line_vars() -> dict[str, str]:
    """doit's ``name=value`` command-line variables."""
    from doit import doit_cmd
    return dict(getattr(doit_cmd, '_CMDLINE_VARS', None) or {})


def dodo_tasks(dodo_file: str, config_file: str | None = None) -> dict:
    """Everything a dodo.py needs: DOIT_CONFIG and the task_* creators.

    A bad pipeline.toml stops here, before doit runs any task, with one ERROR/TIP paragraph.
    """
    root = Path(dodo_file).resolve().parent
    variables = command_line_vars()
    try:
        config = config_module.load(config_file or os.environ.get('TG_PIPELINE_CONFIG') or root / 'pipeline.toml',
                                    overrides=variables)
        pipeline = Pipeline(config, [variables['job']] if variables.get('job') else None, variables)
        functions = pipeline.doit_tasks()
    except PipelineError as e:
        report(e)
        sys.exit(2)
    config.build_dir.mkdir(parents=True, exist_ok=True)
    functions['DOIT_CONFIG'] = {
        'dep_file': str(config.build_dir / '.doit.db'),
        'default_tasks': ['build_image'],
        'verbosity': 1,
    }
    return functions
