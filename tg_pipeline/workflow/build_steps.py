"""The actions behind the doit tasks: one small function per step, over a :class:`Context`.

Each takes the context and a job name, calls the library function of its step (``job/``, ``package/``,
``image/``, ``runs/``) and keeps what the caller needs in ``ctx.results``. Heavy modules are imported inside
the functions, so that listing tasks and deciding that nothing changed stays cheap.
"""
from __future__ import annotations


from tg_pipeline.workflow.context import Context
from tg_pipeline.workflow.context import config_origin_is_api


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
    if j.factory:  # a job of pipeline.toml travels as its reference: a code edit imports none of its modules here
        from tg_pipeline.job.reference import write
        write(config, job, p.resource)
        return
    where = (config.root, str(config.path), f'jobs.{job}.factory', j.factory_line)
    variants = [(label, make_job(j.factory, list(j.args), dict(kwargs), *where)) for label, kwargs in j.variants()]
    payload_job = variants[0][1] if variants else make_job(j.factory, list(j.args), dict(j.kwargs), *where)
    dump(payload_job, p.payload, config.source_roots)
    if variants:  # every variant in the one image; a swarm task picks its own by its slot
        dump(variants, p.resource('variants'), config.source_roots)


def sdist(ctx: Context, job: str) -> None:
    """The sdist, made from the last one and the files that changed (:func:`~tg_pipeline.package.sdist.
    incremental_sdist`), while the import check runs when what it depends on changed."""
    from tg_pipeline.job.checks import start_import_check
    from tg_pipeline.package.sdist import incremental_sdist, root_paths
    from tg_pipeline.paths import write_if_changed
    from tg_pipeline.package.tree import index_bytes
    config, j, p = ctx.config, ctx.config.job(job), ctx.paths(job)
    names = ctx.resource_names(job)
    setting = 'packaging.source_roots' if config_origin_is_api(config.origins.get('package.source_roots', '')) \
        else f'source_roots in [package] of {config.path.name}'
    resources = {n: p.resource(n).read_bytes() for n in names}
    name, data, index, members = incremental_sdist(j.package, j.version, j.module, config.source_roots, resources,
                                                   list(j.dependencies), p.pyproject, p.sdist_index, p.sdist,
                                                   root_paths(config.source_roots, config.root))
    imports = {n for m in members.values() if m.source.endswith('.py') for n in m.imports}
    check = start_import_check(job, [p.resource(n) for n in names], list(j.dependencies), config.source_roots,
                               config.root, setting, record=p.import_check, names=imports)
    check.finish()  # bad input stops here, before anything is written
    write_if_changed(p.context / name, data)
    write_if_changed(p.sdist_index, index_bytes(index))
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
    from tg_pipeline.hosts.engine import local_engine
    from tg_pipeline.image.job_image import build_job_image, record_image
    from tg_pipeline.job.checks import check_python_version
    early_login_failed(ctx)
    p, client = ctx.paths(job), local_engine()
    check_python_version(job, [p.resource(n).read_bytes() for n in ctx.resource_names(job)],
                         ctx.config.base_image, client, ctx.config.build_dir / 'base_python.json')
    here = ctx.loads_here(job)
    image = build_job_image(client, p, ctx.image_tag(job), image_settings(ctx, job), console=ctx.steps_console(),
                            load_here=here)
    record_image(p, image, ctx.image_tag(job))
    ctx.steps_console().step_note(('dependencies and code layer' if image.deps_built else 'code layer only')
                          + ('' if here else ', for the remote'))


def push(ctx: Context, job: str) -> None:
    from tg_pipeline.image.build import built_image_id
    from tg_pipeline.image.registry import push as send
    early_login_failed(ctx)
    p = ctx.paths(job)
    send(built_image_id(p.image), ctx.delivery(job).registry_reference(), p.push, auth=ctx.registry_auth(),
         console=ctx.steps_console())


def early_login_failed(ctx: Context) -> None:
    """Before build_image or push of a command that runs run_remote only: the early SSH login's error, when it has
    failed already (a name that does not resolve, a refused connection), rather than after a long build; a login
    still going on is not waited for (run_remote takes it, see :mod:`tg_pipeline.ssh.early`)."""
    if set(ctx.requested) != {'run_remote'} or not ctx.config.remote.host:
        return
    from tg_pipeline.ssh.early import failed
    error = failed(ctx.config)
    if error is not None:
        raise error


def push_current(ctx: Context, job: str) -> bool:
    from tg_pipeline.errors import ConfigError
    from tg_pipeline.image.registry import push_up_to_date
    p = ctx.paths(job)
    try:
        reference = ctx.delivery(job).registry_reference()
    except ConfigError:  # no registry: push runs and says so
        return False
    return push_up_to_date(p.push, p.image, auth=ctx.registry_auth(), reference=reference)


def image_current(ctx: Context, job: str) -> bool:
    """build_image's up-to-date check. Without an engine here it is not up to date, so that the step runs and says
    so in one ERROR/TIP paragraph (an error raised in a check shows as doit's traceback)."""
    from tg_pipeline.errors import DockerUnavailable
    from tg_pipeline.image.build import image_up_to_date
    try:
        if not ctx.loads_here(job):
            from tg_pipeline.hosts.engine import local_engine
            from tg_pipeline.image.job_image import composed_up_to_date
            return composed_up_to_date(local_engine(), ctx.paths(job))
        return image_up_to_date(ctx.paths(job).image)
    except DockerUnavailable:
        return False


