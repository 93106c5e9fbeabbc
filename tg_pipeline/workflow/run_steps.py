"""The actions of the run steps (``run_attached``, ``run_local``, ``run_remote``, ``run_swarm``) and of the
lifecycle commands (``status``, ``logs``, ``stop``, ``result``), over a :class:`~.context.Context`."""
from __future__ import annotations
from tg_pipeline.errors import ConfigError
from tg_pipeline.workflow.context import Context
from tg_pipeline.workflow.build_steps import image_settings
from tg_pipeline.workflow.context import config_origin_is_api


def say_failed_run(error, console) -> None:
    """After the ERROR of a run that failed: its final line (run id, exit status, where its logs are), on
    ``console`` (see :meth:`Context.outcome_console`)."""
    result = getattr(error, 'result', None)
    if result is not None and getattr(result, 'run_id', None) and not getattr(result, 'variants', None):
        from tg_pipeline.runs.lifecycle import final_line
        from tg_pipeline.runs.records import result_not_kept
        kept = result_not_kept(result.run_dir)
        if kept is not None:  # never "Result: None" for a value that was there and could not come back
            console.print(f'Result: not kept: {kept}')
        line = final_line(result)
        if line:
            console.print(line)


# --- run steps -----------------------------------------------------------------------------------------
def check_env(ctx: Context, job: str, environ=None) -> None:
    """Before a run starts: every variable the job's ``env`` names is set here, unless its env_missing is
    "ignore" (then a missing one is missing in the container too)."""
    import os
    import shlex
    j = ctx.config.job(job)
    environ = os.environ if environ is None else environ
    missing = [name for name in j.run.env if name not in environ]
    if not missing or j.run.env_missing == 'ignore':
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


def run_spec(ctx: Context, job: str, reference: str = '', image_id: str = ''):
    from tg_pipeline.image.build import recorded_image
    from tg_pipeline.runs.model import RunSpec
    from tg_pipeline.runs.resources import env_file_values
    j = ctx.config.job(job)
    record = recorded_image(ctx.paths(job).image) or {}
    return RunSpec(image_id=image_id or record.get('image_id') or ctx.image_tag(job), job=j.name, package=j.package,
                   version=j.version, module=j.module, project=ctx.config.project, owner=ctx.config.owner,
                   reference=reference or ctx.image_tag(job), variants=tuple(ctx.variant_labels(job)), run=j.run,
                   env_file_values=env_file_values(j, ctx.config.root),
                   sweep='variants' in ctx.resource_names(job))


def _run(ctx: Context, job: str, host, spec, gathered) -> None:
    from tg_pipeline.runs import backend_for
    from tg_pipeline.runs import lifecycle
    from tg_pipeline.workflow.recording import recorded  # the run keeps what ran (provenance)
    console = ctx.run_console(host.where)
    backend = recorded(ctx, job, host, spec, backend_for(host, ctx.config, console, ctx.flag('detach')),
                       gathered=gathered)
    outcome = lifecycle.run(backend, spec, ctx.paths(job).runs(host.where), detach=ctx.flag('detach'),
                            on_interrupt=ctx.config.run.on_interrupt, console=console)
    if hasattr(outcome, 'exit_code'):
        ctx.say(job, outcome)
    else:
        ctx.results[job] = outcome  # a detached run's handle


def run_attached(ctx: Context, job: str) -> None:
    from tg_pipeline.runs.attached import run_attached as run_here
    from tg_pipeline.runs.model import new_run_id
    from tg_pipeline.workflow.recording import attached
    run_id = new_run_id()
    run_dir = ctx.paths(job).runs('attached').run_dir(run_id)  # its output/ is TG_PIPELINE_OUTPUT
    with attached(ctx, job, run_id) as done:  # the run keeps what ran (provenance)
        value = run_here(ctx.paths(job).payload, job, build=lambda record: _built(ctx, job, record),
                         run_dir=run_dir, project_root=ctx.config.root)
        done(value)
    ctx.results[job] = value
    if not ctx.capture:
        from tg_pipeline.runs.results import shown_object
        kept = run_dir / 'output'
        ctx.outcome_console().print(f'Result: {shown_object(value)}' + (
            f'\n  output folder: {kept}' if kept.is_dir() and any(kept.iterdir()) else ''))


def _built(ctx: Context, job: str, record: dict):
    """A job of pipeline.toml, built here from its reference record (an attached run runs here)."""
    from tg_pipeline.job.factory import make_job
    config = ctx.config
    return make_job(record['factory'], list(record['args']), dict(record['kwargs']), config.root, str(config.path),
                    f'jobs.{job}.factory', config.job(job).factory_line)


def run_local(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.workflow.recording import gather
    check_env(ctx, job)
    with open_host(ctx.config, 'local') as host:
        _run(ctx, job, host, run_spec(ctx, job), gather(ctx, job, host))


def run_remote(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.workflow.recording import gather
    check_env(ctx, job)
    with open_host(ctx.config, 'remote') as host:
        gathered = gather(ctx, job, host)  # the record's reading, while the image reaches the host
        image_id, reference = ctx.delivery(job).to_remote(host, ctx.paths(job), image_settings(ctx, job),
                                                          ctx.registry_auth(), ctx.delivery_console())
        _run(ctx, job, host, run_spec(ctx, job, reference, image_id), gathered)


def run_swarm(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.workflow.recording import gather
    check_env(ctx, job)
    image_id, reference = ctx.delivery(job).for_swarm(ctx.paths(job), lambda: open_host(ctx.config, 'remote'),
                                                      image_settings(ctx, job), ctx.registry_auth(),
                                                      ctx.delivery_console())
    with open_host(ctx.config, 'swarm') as host:
        _run(ctx, job, host, run_spec(ctx, job, reference, image_id), gather(ctx, job, host))


def lifecycle_step(ctx: Context, job: str, step: str) -> None:
    """status / logs / stop / result of a run, on the host ``where=`` names, for every kind of run."""
    from tg_pipeline.runs import backend_on, lifecycle
    where, run_id = ctx.where(), ctx.variables.get('run_id') or None
    scope = lifecycle.Scope(job, ctx.config.project, ctx.flag('all_projects'))
    paths = ctx.paths(job).runs(where)
    with backend_on(ctx.config, where, ctx.host(where)) as kind:
        console = ctx.run_console()  # what the command prints is its point
        from tg_pipeline.runs import variants
        index = variants.variant_number(ctx.variables.get('variant'))
        if variants.wants_variants(step, ctx.variables, kind, scope, paths):  # variant=N, or a sweep's table
            outcome = variants.step(step, kind, scope, paths, run_id, index, console, ctx.flag('follow'))
            if step == 'result':
                ctx.say(job, outcome)
            return
        if step == 'status':
            if scope.all_projects and not run_id:  # the host's every run, once for all the jobs asked
                if ('all_projects', where) in ctx.results:
                    return
                ctx.results[('all_projects', where)] = True
            ctx.results[job] = lifecycle.status(kind, scope, paths, run_id, console)
        elif step == 'stop':
            lifecycle.stop(kind, scope, paths, run_id, console)
        elif step == 'logs':
            result = lifecycle.logs(kind, scope, paths, run_id, follow=ctx.flag('follow'), console=console)
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
