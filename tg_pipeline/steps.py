"""The actions behind the doit tasks: one small function per step, over a :class:`Context`.

Each takes the context and a job name, calls the library function of its step (``job/``, ``package/``,
``image/``, ``runs/``) and keeps what the caller needs in ``ctx.results``. Heavy modules are imported inside
the functions, so that listing tasks and deciding that nothing changed stays cheap.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tg_pipeline.errors import ConfigError, PipelineError
from tg_pipeline.paths import JobPaths
from tg_pipeline.progress import step_note as note


@dataclass
class Context:
    """One doit run over one configuration (from pipeline.toml, or built by the Python API).

    ``payloads`` (job -> {resource: pickled bytes}) replace the serialize step of those jobs; ``sweeps``
    (job -> variant labels) go with payloads that hold a ``variants`` resource. With ``capture``, errors
    are kept in ``errors`` for the caller instead of printed."""
    config: object
    variables: dict = field(default_factory=dict)
    payloads: dict = field(default_factory=dict)
    sweeps: dict = field(default_factory=dict)
    capture: bool = False
    results: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    image_here: bool = True  # build_image loads the job image into the local engine (see tasks.image_needed_here)

    def flag(self, name: str) -> bool:
        """A yes/no command-line variable: detach=1, follow=true ..."""
        return str(self.variables.get(name, '')).lower() in ('1', 'true', 'yes')

    def where(self) -> str:
        from tg_pipeline.hosts import check_where
        return check_where(str(self.variables.get('where') or 'local'))

    def paths(self, job: str) -> JobPaths:
        return JobPaths.of(self.config, job)

    def resource_names(self, job: str) -> list[str]:
        if job in self.payloads:
            return sorted(self.payloads[job])
        return ['job', 'variants'] if self.config.job(job).sweep else ['job']

    def variant_labels(self, job: str) -> list[str]:
        if job in self.payloads:
            return self.sweeps.get(job) or ['job']
        j = self.config.job(job)
        return [label for label, _ in j.variants()] if j.sweep else ['job']

    def image_tag(self, job: str) -> str:
        j = self.config.job(job)
        return j.image or f'{self.config.docker.image_prefix}{j.package}:{j.version}'

    def transfer(self) -> str:
        return self.config.remote.transfer or ('registry' if self.config.registry.address else 'ssh')

    def registry_auth(self):
        from tg_pipeline.image.registry import auth_config
        return auth_config(self.config.registry)

    def payload_key(self, job: str) -> dict:
        return {name: hashlib.sha256(data).hexdigest() for name, data in self.payloads[job].items()}

    def say(self, job: str, result) -> None:
        """Keep a run's result for the Python API; tell the command-line user the value and where it is
        (also at ``doit -v 0``, which hides the rest of a task's output)."""
        self.results[job] = result
        if not self.capture:
            from tg_pipeline.compat import outcome_stream
            from tg_pipeline.runs.lifecycle import report
            report(result, out=outcome_stream())


def say_failed_run(error) -> None:
    """After the ERROR of a run that failed: its final line (run id, exit status, where its logs are)."""
    result = getattr(error, 'result', None)
    if getattr(result, 'run_id', None) and not getattr(result, 'variants', None):
        from tg_pipeline.compat import outcome_stream
        from tg_pipeline.runs.lifecycle import final_line
        line = final_line(result)
        if line:
            print(line, file=outcome_stream(), flush=True)


# --- build steps -------------------------------------------------------------------------------------
def serialize(ctx: Context, job: str) -> None:
    from tg_pipeline.job.factory import make_job
    from tg_pipeline.job.pickling import check_source_roots, serialize as dump
    from tg_pipeline.paths import write_if_changed
    p = ctx.paths(job)
    if job in ctx.payloads:
        for name, data in ctx.payloads[job].items():
            write_if_changed(p.resource(name), data)
        return
    config, j = ctx.config, ctx.config.job(job)
    check_source_roots(config.source_roots, str(config.path))
    where = (config.root, str(config.path), f'jobs.{job}.factory', j.factory_line)
    variants = [(label, make_job(j.factory, list(j.args), dict(kwargs), *where)) for label, kwargs in j.variants()]
    payload_job = variants[0][1] if variants else make_job(j.factory, list(j.args), dict(j.kwargs), *where)
    dump(payload_job, p.payload, config.source_roots)
    if variants:  # every variant in the one image; a swarm task picks its own by its slot
        dump(variants, p.resource('variants'), config.source_roots)


def sdist(ctx: Context, job: str) -> None:
    from tg_pipeline.job.checks import start_import_check
    from tg_pipeline.package.sdist import sdist_archive
    from tg_pipeline.paths import write_if_changed
    config, j, p = ctx.config, ctx.config.job(job), ctx.paths(job)
    names = ctx.resource_names(job)
    setting = 'packaging.source_roots' if config_origin_is_api(config.origins.get('package.source_roots', '')) \
        else f'source_roots in [package] of {config.path.name}'
    check = start_import_check(job, [p.resource(n) for n in names], list(j.dependencies), config.source_roots,
                               config.root, setting, record=p.import_check)  # runs while the sdist is made
    try:
        resources = {n: p.resource(n).read_bytes() for n in names}
        name, data = sdist_archive(j.package, j.version, j.module, config.source_roots, resources,
                                   list(j.dependencies), cache=p.pyproject)
    except BaseException:
        check.cancel()
        raise
    check.finish()  # bad input stops here, before anything is written
    write_if_changed(p.context / name, data)
    for stale in p.context.glob('*.tar.gz'):  # an old name must not bloat the build context
        if stale.name != name:
            stale.unlink()


def dockerfile_values(ctx: Context, job: str) -> dict:
    j = ctx.config.job(job)
    return dict(job=j.name, package=j.package, version=j.version, module=j.module, project=ctx.config.project,
                base_image=ctx.config.base_image, dependencies=list(j.dependencies))


def dockerfile(ctx: Context, job: str) -> None:
    from tg_pipeline.package.dockerfile import make_dockerfile
    make_dockerfile(ctx.paths(job).context, **dockerfile_values(ctx, job))


def image_settings(ctx: Context, job: str) -> dict:
    from tg_pipeline.package.dockerfile import job_image_settings
    return job_image_settings(**dockerfile_values(ctx, job))


def build_image(ctx: Context, job: str) -> None:
    """The job image on the local engine: its dependency image (built only when the requirements changed) plus
    the code layer, appended without a build."""
    from tg_pipeline.hosts import local_engine
    from tg_pipeline.image.job_image import build_job_image, record_image
    from tg_pipeline.job.checks import check_python_version
    p, client = ctx.paths(job), local_engine()
    check_python_version(job, [p.resource(n).read_bytes() for n in ctx.resource_names(job)],
                         ctx.config.base_image, client, ctx.config.build_dir / 'base_python.json')
    image = build_job_image(client, p, ctx.image_tag(job), image_settings(ctx, job), verbose=ctx.config.docker.verbose,
                            load_here=ctx.image_here)
    record_image(p, image, ctx.image_tag(job))
    note(('dependencies and code layer' if image.deps_built else 'code layer only')
         + ('' if ctx.image_here else ', for the remote'))


def registry_reference(ctx: Context, job: str) -> str:
    from tg_pipeline.image.registry import remote_reference
    return remote_reference(ctx.config.registry.address, ctx.image_tag(job))


def push(ctx: Context, job: str) -> None:
    from tg_pipeline.image.build import recorded_image
    from tg_pipeline.image.registry import push as send
    p = ctx.paths(job)
    send(recorded_image(p.image)['image_id'], registry_reference(ctx, job), p.push, auth=ctx.registry_auth())


def push_current(ctx: Context, job: str) -> bool:
    from tg_pipeline.image.registry import push_up_to_date
    p = ctx.paths(job)
    return push_up_to_date(p.push, p.image, auth=ctx.registry_auth())


def image_current(ctx: Context, job: str) -> bool:
    """build_image's up-to-date check. Without an engine here it is not up to date, so that the step runs and says
    so in one ERROR/TIP paragraph (an error raised in a check shows as doit's traceback)."""
    from tg_pipeline.errors import DockerUnavailable
    from tg_pipeline.image.build import image_up_to_date
    try:
        if not ctx.image_here:
            from tg_pipeline.hosts import local_engine
            from tg_pipeline.image.job_image import composed_up_to_date
            return composed_up_to_date(local_engine(), ctx.paths(job))
        return image_up_to_date(ctx.paths(job).image)
    except DockerUnavailable:
        return False


# --- run steps -----------------------------------------------------------------------------------------
def check_env(ctx: Context, job: str, environ=None) -> None:
    """Before a run starts: every variable the job's ``env`` names is set here, unless its env_missing is
    "ignore" (then a missing one is missing in the container too)."""
    import os
    import shlex
    j = ctx.config.job(job)
    environ = os.environ if environ is None else environ
    missing = [name for name in j.env if name not in environ]
    if not missing or j.env_missing == 'ignore':
        return
    origin = ctx.config.origins.get(f'jobs.{job}.env', '')
    exports = ' '.join(f'{shlex.quote(name)}=...' for name in missing)
    if config_origin_is_api(origin):
        allow = "SSHDockerOptions(..., env_missing='ignore')"
    else:
        allow = (f'env_missing = "ignore" in [run] (or in [jobs.{job}]) of {ctx.config.path.name}, or '
                 f'env_missing=ignore on the command line')
    raise ConfigError(f'job {job} passes {", ".join(missing)} from this environment (env, set at {origin}), but '
                      f'{"it is" if len(missing) == 1 else "they are"} not set here', key=f'jobs.{job}.env',
                      hint=f'set {"it" if len(missing) == 1 else "them"} first: export {exports}; or, to run '
                           f'without, {allow}')


def config_origin_is_api(origin: str) -> bool:
    from tg_pipeline.config import API_ORIGIN
    return API_ORIGIN in origin


def run_spec(ctx: Context, job: str, reference: str = '', image_id: str = ''):
    from tg_pipeline.image.build import recorded_image
    from tg_pipeline.runs.base import RunSpec
    from tg_pipeline.runs.resources import RunResources
    j = ctx.config.job(job)
    record = recorded_image(ctx.paths(job).image) or {}
    return RunSpec(image_id=image_id or record.get('image_id') or ctx.image_tag(job), job=j.name, package=j.package,
                   version=j.version, module=j.module, env_names=tuple(j.env), cpu=j.cpu, memory_gb=j.memory_gb,
                   project=ctx.config.project, owner=ctx.config.owner, reference=reference or ctx.image_tag(job),
                   variants=tuple(ctx.variant_labels(job)), resources=RunResources.of(j, ctx.config.root))


def _run(ctx: Context, job: str, host, spec) -> None:
    from tg_pipeline.hosts import backend
    from tg_pipeline.runs import lifecycle
    silent = ctx.capture and host.where == 'swarm'  # a job's own output always shows, but for sweeps in the API
    outcome = lifecycle.run(backend(host, ctx.config), spec, ctx.paths(job).runs(host.where),
                            detach=ctx.flag('detach'), on_interrupt=ctx.config.run.on_interrupt, silent=silent)
    if hasattr(outcome, 'exit_code'):
        ctx.say(job, outcome)
    else:
        ctx.results[job] = outcome  # a detached run's handle


def run_attached(ctx: Context, job: str) -> None:
    from tg_pipeline.runs.attached import run_attached as run_here
    value = run_here(ctx.paths(job).payload, job)
    ctx.results[job] = value
    if not ctx.capture:
        from tg_pipeline.compat import outcome_stream
        from tg_pipeline.runs.records import shown_object
        print(f'Result: {shown_object(value)}', file=outcome_stream(), flush=True)


def run_local(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts import open_host
    check_env(ctx, job)
    with open_host(ctx.config, 'local') as host:
        _run(ctx, job, host, run_spec(ctx, job))


def run_remote(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts import open_host
    check_env(ctx, job)
    with open_host(ctx.config, 'remote') as host:
        image_id, reference = remote_image(ctx, job, host)
        _run(ctx, job, host, run_spec(ctx, job, reference, image_id))


def remote_image(ctx: Context, job: str, host) -> tuple[str, str]:
    """(image id, name for people) of the job image on the remote: built there (build_on = "remote"), or the
    one built here, sent over SSH (transfer = "ssh") or pulled from the registry by digest."""
    from tg_pipeline.image.build import recorded_image
    tag, where = ctx.image_tag(job), host.connection.host
    if ctx.config.job(job).build_on == 'remote':
        from tg_pipeline.image.job_image import build_job_image
        from tg_pipeline.progress import Progress
        with Progress('build', unit='', silent=ctx.capture, keep=True) as shown:  # inside a run step: a line
            image = build_job_image(host.docker, ctx.paths(job), tag, image_settings(ctx, job), engine=host.name,
                                    silent=ctx.capture, host=where, verbose=ctx.config.docker.verbose)
            shown.close(f'on {where}: {"dependency image and " if image.deps_built else ""}code layer '
                        f'(image {image.image_id[7:19]})')
        return image.image_id, tag
    image_id = recorded_image(ctx.paths(job).image)['image_id']
    if ctx.transfer() == 'ssh':
        from tg_pipeline.hosts import local_engine
        from tg_pipeline.image.job_image import deps_tag, recorded_composed
        from tg_pipeline.image.transfer import send_job_image, transfer
        image = recorded_composed(ctx.paths(job))  # None unless image.json's image was composed here
        if image is None:  # built by the engine itself: the whole image, missing layers only
            transfer(local_engine(), host.docker, image_id, tag, ctx.capture, host=where)
        else:
            send_job_image(local_engine(), host.docker, image, tag, deps_tag(tag), ctx.capture, host=where)
        return image_id, tag
    from tg_pipeline.image.registry import pull, recorded_push
    reference = registry_reference(ctx, job)
    pull(host.docker, reference, image_id, ctx.registry_auth(), ctx.capture, host=where,
         digest=recorded_push(ctx.paths(job).push, image_id))
    return image_id, reference


def run_swarm(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts import open_host
    from tg_pipeline.image.registry import recorded_push
    check_env(ctx, job)
    if not ctx.config.registry.address:
        raise ConfigError('run_swarm needs a [registry] address: every node pulls the image from there',
                          key='registry.address', hint='set address in [registry] of pipeline.toml')
    if ctx.config.job(job).build_on == 'remote':
        image_id, reference = pushed_from_remote(ctx, job)
    else:
        image_id, reference = run_spec(ctx, job).image_id, registry_reference(ctx, job)
        digest = recorded_push(ctx.paths(job).push, image_id)
        if digest:  # every node runs exactly the pushed manifest, whatever the tag points at by then
            reference = by_digest(reference, digest)
    with open_host(ctx.config, 'swarm') as host:
        _run(ctx, job, host, run_spec(ctx, job, reference, image_id))


def pushed_from_remote(ctx: Context, job: str) -> tuple[str, str]:
    """build_on = "remote" for a swarm run: the [remote] host builds the job image and pushes it to the registry
    itself, so nothing but the inputs crosses this machine's link; (image id, ``repository@digest``)."""
    from tg_pipeline.hosts import open_host
    from tg_pipeline.image.registry import push
    reference = registry_reference(ctx, job)
    with open_host(ctx.config, 'remote') as host:
        image_id, _ = remote_image(ctx, job, host)
        digest = push(image_id, reference, auth=ctx.registry_auth(), silent=ctx.capture, client=host.docker)
    return image_id, by_digest(reference, digest)


def by_digest(reference: str, digest: str) -> str:
    """``registry/name@sha256:...`` for ``registry/name:tag``: exactly that manifest, whatever the tag says now."""
    return f'{reference.rpartition(":")[0]}@{digest}'


def lifecycle_step(ctx: Context, job: str, step: str) -> None:
    """status / logs / stop / result of a run, on the host ``where=`` names, for every kind of run."""
    from tg_pipeline.hosts import backend, open_host
    from tg_pipeline.runs import lifecycle
    where, run_id = ctx.where(), ctx.variables.get('run_id') or None
    scope = lifecycle.Scope(job, ctx.config.project, ctx.flag('all_projects'))
    paths = ctx.paths(job).runs(where)
    with open_host(ctx.config, where) as host:
        kind = backend(host, ctx.config)
        if step == 'status':
            ctx.results[job] = lifecycle.status(kind, scope, paths, run_id)
        elif step == 'stop':
            lifecycle.stop(kind, scope, paths, run_id)
        elif step == 'logs':
            result = lifecycle.logs(kind, scope, paths, run_id, follow=ctx.flag('follow'))
            if result is not None:  # followed to its end: collected like an attached run
                ctx.say(job, result)
        else:
            ctx.say(job, lifecycle.result(kind, scope, paths, run_id))


def clean_runs(ctx: Context, job: str, where: str, dryrun: bool) -> None:
    """``doit clean run_WHERE:JOB``: the runs of the job collected here from that host (never a run on a host)."""
    import shutil
    paths = ctx.paths(job).runs(where)
    if paths.dir.is_dir():
        print(f'run_{where}:{job} - removing {len(paths.saved_ids())} collected run(s) in {paths.dir}')
        if not dryrun:
            shutil.rmtree(paths.dir)


def draw_graph(ctx: Context, tasks: dict, probe) -> None:
    """``doit graph``: the chosen jobs' steps (``tasks``: step -> sub-task dicts), marked by ``probe`` (doit's
    own up-to-date answers), as build/graph.dot and .png."""
    from tg_pipeline.graph import write_graph
    write_graph(tasks, ctx.config.build_dir / 'graph.dot', probe, everything=ctx.flag('all'),
                files=ctx.flag('files'), root=ctx.config.root)


def show_config(ctx: Context, jobs: list[str]) -> None:
    from tg_pipeline.config import describe
    print(describe(ctx.config, jobs))


def check_remote(ctx: Context) -> None:
    from tg_pipeline.preflight import check_remote as preflight
    from tg_pipeline.ssh import RemoteTarget
    failed = preflight(RemoteTarget.from_config(ctx.config.remote), ctx.config.registry.address, ctx.registry_auth())
    if failed:
        raise PipelineError(f'{failed} preflight check(s) failed (see the TIP lines above)')


__all__ = ['Context', 'serialize', 'sdist', 'dockerfile', 'build_image', 'push', 'run_attached', 'run_local',
           'run_remote', 'run_swarm', 'lifecycle_step', 'clean_runs', 'draw_graph',
           'show_config', 'check_remote']
