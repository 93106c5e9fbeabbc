"""The actions of the run steps (``run_attached``, ``run_local``, ``run_remote``, ``run_swarm``) and of the
lifecycle commands (``status``, ``logs``, ``stop``, ``result``), over a :class:`~.context.Context`."""
from __future__ import annotations
from tg_pipeline.errors import ConfigError
from tg_pipeline.workflow.context import Context
from tg_pipeline.workflow.build_steps import image_settings, registry_reference
from tg_pipeline.workflow.context import config_origin_is_api


def say_failed_run(error, console) -> None:
    """After the ERROR of a run that failed: its final line (run id, exit status, where its logs are), on
    ``console`` (see :meth:`Context.outcome_console`)."""
    result = getattr(error, 'result', None)
    if getattr(result, 'run_id', None) and not getattr(result, 'variants', None):
        from tg_pipeline.runs.lifecycle import final_line
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


def run_spec(ctx: Context, job: str, reference: str = '', image_id: str = ''):
    from tg_pipeline.image.build import recorded_image
    from tg_pipeline.runs.model import RunSpec
    from tg_pipeline.runs.resources import RunResources
    j = ctx.config.job(job)
    record = recorded_image(ctx.paths(job).image) or {}
    return RunSpec(image_id=image_id or record.get('image_id') or ctx.image_tag(job), job=j.name, package=j.package,
                   version=j.version, module=j.module, env_names=tuple(j.env), cpu=j.cpu, memory_gb=j.memory_gb,
                   project=ctx.config.project, owner=ctx.config.owner, reference=reference or ctx.image_tag(job),
                   variants=tuple(ctx.variant_labels(job)), resources=RunResources.of(j, ctx.config.root))


def _run(ctx: Context, job: str, host, spec) -> None:
    from tg_pipeline.runs import backend_for
    from tg_pipeline.runs import lifecycle
    outcome = lifecycle.run(backend_for(host, ctx.config), spec, ctx.paths(job).runs(host.where),
                            detach=ctx.flag('detach'), on_interrupt=ctx.config.run.on_interrupt,
                            console=ctx.run_console(host.where))
    if hasattr(outcome, 'exit_code'):
        ctx.say(job, outcome)
    else:
        ctx.results[job] = outcome  # a detached run's handle


def run_attached(ctx: Context, job: str) -> None:
    from tg_pipeline.runs.attached import run_attached as run_here
    value = run_here(ctx.paths(job).payload, job)
    ctx.results[job] = value
    if not ctx.capture:
        from tg_pipeline.runs.results import shown_object
        ctx.outcome_console().print(f'Result: {shown_object(value)}')


def run_local(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts.host import open_host
    check_env(ctx, job)
    with open_host(ctx.config, 'local') as host:
        _run(ctx, job, host, run_spec(ctx, job))


def run_remote(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts.host import open_host
    check_env(ctx, job)
    with open_host(ctx.config, 'remote') as host:
        image_id, reference = remote_image(ctx, job, host)
        _run(ctx, job, host, run_spec(ctx, job, reference, image_id))


def remote_image(ctx: Context, job: str, host) -> tuple[str, str]:
    """(image id, name for people) of the job image on the remote: built there (build_on = "remote"), or the
    one built here, sent over SSH (transfer = "ssh") or pulled from the registry by digest."""
    from tg_pipeline.image.build import recorded_image
    tag, where, console = ctx.image_tag(job), host.connection.host, ctx.delivery_console()
    if ctx.config.job(job).build_on == 'remote':
        from tg_pipeline.image.job_image import build_job_image
        with console.progress('build', unit='', keep=True) as shown:  # inside a run step: a line
            image = build_job_image(host.docker, ctx.paths(job), tag, image_settings(ctx, job), engine=host.name,
                                    console=console, host=where)
            shown.close(f'on {where}: {"dependency image and " if image.deps_built else ""}code layer '
                        f'(image {image.image_id[7:19]})')
        return image.image_id, tag
    image_id = recorded_image(ctx.paths(job).image)['image_id']
    if ctx.transfer() == 'ssh':
        from tg_pipeline.hosts.engine import local_engine
        from tg_pipeline.image.job_image import deps_tag, recorded_composed
        from tg_pipeline.image.transfer import send_job_image, transfer
        image = recorded_composed(ctx.paths(job))  # None unless image.json's image was composed here
        if image is None:  # built by the engine itself: the whole image, missing layers only
            transfer(local_engine(), host.docker, image_id, tag, console, host=where)
        else:
            send_job_image(local_engine(), host.docker, image, tag, deps_tag(tag), console, host=where)
        return image_id, tag
    from tg_pipeline.image.registry import pull, recorded_push
    reference = registry_reference(ctx, job)
    pull(host.docker, reference, image_id, ctx.registry_auth(), console, host=where,
         digest=recorded_push(ctx.paths(job).push, image_id))
    return image_id, reference


def run_swarm(ctx: Context, job: str) -> None:
    from tg_pipeline.hosts.host import open_host
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
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.image.registry import push
    reference = registry_reference(ctx, job)
    with open_host(ctx.config, 'remote') as host:
        image_id, _ = remote_image(ctx, job, host)
        digest = push(image_id, reference, auth=ctx.registry_auth(), console=ctx.delivery_console(),
                      client=host.docker)
    return image_id, by_digest(reference, digest)


def by_digest(reference: str, digest: str) -> str:
    """``registry/name@sha256:...`` for ``registry/name:tag``: exactly that manifest, whatever the tag says now."""
    return f'{reference.rpartition(":")[0]}@{digest}'


def lifecycle_step(ctx: Context, job: str, step: str) -> None:
    """status / logs / stop / result of a run, on the host ``where=`` names, for every kind of run."""
    from tg_pipeline.runs import backend_for
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.runs import lifecycle
    where, run_id = ctx.where(), ctx.variables.get('run_id') or None
    scope = lifecycle.Scope(job, ctx.config.project, ctx.flag('all_projects'))
    paths = ctx.paths(job).runs(where)
    with open_host(ctx.config, where) as host:
        kind = backend_for(host, ctx.config)
        console = ctx.run_console()  # what the command prints is its point
        if step == 'status':
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
