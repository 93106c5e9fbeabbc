"""``doit rerun run_id=... [where=... host=...]``: run exactly the code and payload a kept run ran, from what was
kept, whatever the work tree holds now.

The kept sdist (which holds the payload) is put in a build context of its own,
``build/.provenance/rerun/RUN_ID-XXXX/JOB/`` (removed once the run has started), beside the Dockerfile and
requirements.txt its dependency image was built from (kept with its dependency set). The job image is made from them as a build makes it: on the dependency image
of that run while its engine still has it, else on one built again from the kept requirements; then it goes
where the run happens as any image does (registry or SSH, ``build_on``). The run has the kept run's settings
(limits, env names, GPUs, mounts ...); env values are this environment's, as in any run. Its record names the run
it repeats.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import types

from tg_pipeline.errors import ConfigError, PipelineError
from tg_pipeline.paths import JobPaths, write_if_changed
from tg_pipeline.workflow.context import Context
from tg_pipeline.workflow.recording import recorded, store_of


def rerun_tag(tag: str) -> str:
    """The name a re-run's image gets (for people; runs use ids): the job's, ``-rerun`` after its version."""
    name, _, version = tag.rpartition(':')
    return f'{name}:{version}-rerun' if name and '/' not in version else f'{tag}-rerun'


def where_of(ctx: Context, original: dict) -> str:
    from tg_pipeline.hosts.host import check_where
    where = str(ctx.variables.get('where') or original.get('where') or 'local')
    return 'local' if where == 'attached' else check_where(where)  # an attached run's code runs in a container


def refuse_changes(ctx: Context, original: dict) -> None:
    """A re-run has the kept run's job settings: one given on the command line would make it another run."""
    from tg_pipeline.config.schema import COMMAND_LINE
    given = sorted(k for k, v in ctx.config.origins.items() if v == COMMAND_LINE and k.startswith(('run.', 'jobs.')))
    if given:
        raise ConfigError(f'doit rerun runs run {original["run_id"]} with the settings it had: '
                          f'{", ".join(given)} on the command line would change what it runs', key=given[0],
                          hint=f'drop {"it" if len(given) == 1 else "them"}: doit rerun run_id={original["run_id"]} '
                               f'(where= and host= choose where it runs)')


def remote_of(ctx: Context, original: dict, where: str) -> None:
    """Without a [remote] host here (nor host= on the command line), a remote or swarm re-run goes to the host
    that the kept run's configuration names: where it ran."""
    from tg_pipeline.provenance.compare import flat_configuration
    if where == 'local' or ctx.config.remote.host:
        return
    kept = flat_configuration(store_of(ctx).read('config', original.get('config') or ''))
    settings = {key: (kept.get(f'remote.{key}') or (None, ''))[0] for key in ('host', 'user', 'port', 'identity_file')}
    if settings['host']:
        remote = dataclasses.replace(ctx.config.remote, **{k: v for k, v in settings.items() if v is not None})
        origins = {**ctx.config.origins, 'remote.host': f'the configuration of run {original["run_id"]}'}
        ctx.config = dataclasses.replace(ctx.config, remote=remote, origins=origins)


def kept_inputs(ctx: Context, original: dict):
    """(the kept sdist's path, the kept dependency record) of the run, or the error that says what is missing."""
    from tg_pipeline.provenance import dependencies
    store, run_id = store_of(ctx), original['run_id']
    sdist = store.path('sdist', (original.get('code') or {}).get('sdist') or 'missing')
    if not sdist.exists():
        raise PipelineError(f'the sdist of run {run_id} is not in {store.root}: its code cannot run again',
                            hint='it was removed by hand; doit runs lists the runs whose code is kept')
    deps = dependencies.read(store, (original.get('dependencies') or {}).get('key', ''))
    if original.get('where') == 'attached':
        deps = None  # it ran in this Python: its code runs on a dependency image made from its settings
    if deps is not None and not deps.get('dockerfile'):
        deps = None
    return sdist, deps


def context_for(ctx: Context, original: dict, sdist, deps: dict | None) -> JobPaths:
    """The re-run's build context: the kept sdist (copied with its time: the same image config, the same id, on
    the same dependency image), and the Dockerfile and requirements.txt of the run's dependency image."""
    import tempfile
    from tg_pipeline.image.job_image import deps_key
    who, scratch = original['identity'], store_of(ctx).root / 'rerun'
    scratch.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=original['run_id'] + '-', dir=scratch)  # its own: re-runs may go on at once
    paths = JobPaths(folder, original['job'], who['module'], who['version'])
    paths.context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(sdist, paths.sdist)
    if deps is None:  # an attached run's: the dependency image its settings make
        from tg_pipeline.package.dockerfile import make_dockerfile
        make_dockerfile(paths.context, job=original['job'], package=who['package'], version=who['version'],
                        module=who['module'], project=who['project'], base_image=ctx.config.base_image,
                        dependencies=_dependencies(ctx, original))
        return paths
    write_if_changed(paths.context / 'Dockerfile', deps['dockerfile'].encode())
    write_if_changed(paths.context / 'requirements.txt', deps['requirements'].encode())
    entry = {'key': deps_key(paths.context), 'image_id': deps['image_id'], 'tag': ''}
    write_if_changed(paths.deps, json.dumps({deps.get('engine') or 'local': entry}, indent=1).encode())
    return paths


def _dependencies(ctx: Context, original: dict) -> list[str]:
    from tg_pipeline.provenance.compare import flat_configuration
    kept = flat_configuration(store_of(ctx).read('config', original.get('config') or ''))
    return list((kept.get(f'jobs.{original["job"]}.dependencies') or ([], ''))[0])


def delivery_for(ctx: Context, original: dict):
    from tg_pipeline.image.delivery import Delivery
    job, who = original['job'], original['identity']
    if job in ctx.config.jobs:
        delivery = Delivery.of(ctx.config, job)
    else:  # a job no longer declared (or one of the Python API): this project's image settings
        transfer = ctx.config.remote.transfer or ('registry' if ctx.config.registry.address else 'ssh')
        delivery = Delivery(job, f'{ctx.config.docker.image_prefix}{who["package"]}:{who["version"]}',
                            ctx.config.docker.build_on, transfer, ctx.config.registry.address)
    return dataclasses.replace(delivery, tag=rerun_tag(delivery.tag))


def run_settings(original: dict):
    """The kept run's settings (limits, env names, GPUs, mounts ...), checked against this environment."""
    from tg_pipeline.config.schema import RunSettings
    names = {f.name for f in dataclasses.fields(RunSettings)}
    run = RunSettings(**{k: v for k, v in (original.get('run_settings') or {}).items() if k in names})
    check_env(original['job'], run)
    return run


def spec_for(ctx: Context, original: dict, image_id: str, reference: str):
    from tg_pipeline.runs.model import RunSpec
    from tg_pipeline.runs.resources import env_file_values
    who, run = original['identity'], run_settings(original)
    values = env_file_values(types.SimpleNamespace(name=original['job'], run=run), ctx.config.root)
    return RunSpec(image_id=image_id, job=original['job'], package=who['package'], version=who['version'],
                   module=who['module'], project=ctx.config.project, owner=ctx.config.owner, reference=reference,
                   variants=tuple(original.get('variants') or ('job',)), run=run, env_file_values=values)


def check_env(job: str, run) -> None:
    import os
    missing = [name for name in run.env if name not in os.environ]
    if missing and run.env_missing != 'ignore':
        exports = ' '.join(f'{name}=...' for name in missing)
        raise ConfigError(f'the run of job {job} being repeated passed {", ".join(missing)} from its environment, '
                          f'and {"it is" if len(missing) == 1 else "they are"} not set here', key='env',
                          hint=f'set {"it" if len(missing) == 1 else "them"} first: export {exports}')


def image_here(ctx: Context, paths: JobPaths, delivery, settings: dict, load_here: bool = True) -> str:
    from tg_pipeline.hosts.engine import local_engine
    from tg_pipeline.image.job_image import build_job_image, record_image
    image = build_job_image(local_engine(), paths, delivery.tag, settings, console=ctx.steps_console(),
                            load_here=load_here)
    record_image(paths, image, delivery.tag)
    return image.image_id


def rerun(ctx: Context) -> None:
    """``doit rerun``: the kept run's code and payload, run again where= says (default: where it ran)."""
    from tg_pipeline.package.dockerfile import job_image_settings
    from tg_pipeline.workflow.what_ran import find_run
    _, original = find_run(ctx, command='rerun')
    where, who = where_of(ctx, original), original['identity']
    refuse_changes(ctx, original)
    run_settings(original)  # before anything is built: what this environment lacks for it
    remote_of(ctx, original, where)
    sdist, deps = kept_inputs(ctx, original)
    paths, delivery = context_for(ctx, original, sdist, deps), delivery_for(ctx, original)
    settings = job_image_settings(job=original['job'], package=who['package'], version=who['version'],
                                  module=who['module'], project=who['project'])
    ctx.run_console(where).print(f'rerun of run {original["run_id"]} ({original.get("where")}): its code and payload '
                                 f'(sdist {original["code"]["sdist"][:12]}), from what was kept')
    place = {'local': _local, 'remote': _remote, 'swarm': _swarm}[where]
    try:
        place(ctx, original, paths, delivery, settings)
    finally:  # the images are made and delivered by now: their build context goes
        shutil.rmtree(paths.dir.parent, ignore_errors=True)


def _run(ctx: Context, original: dict, paths: JobPaths, host, spec) -> None:
    from tg_pipeline.runs import backend_for, lifecycle
    job = original['job']
    backend = recorded(ctx, job, host, spec, backend_for(host, ctx.config), original=original, paths=paths)
    runs = JobPaths(ctx.config.build_dir, job).runs(host.where)
    outcome = lifecycle.run(backend, spec, runs, detach=ctx.flag('detach'), on_interrupt=ctx.config.run.on_interrupt,
                            console=ctx.run_console(host.where))
    if hasattr(outcome, 'exit_code'):
        ctx.say(job, outcome)
    else:
        ctx.results[job] = outcome


def _local(ctx: Context, original: dict, paths: JobPaths, delivery, settings: dict) -> None:
    from tg_pipeline.hosts.host import open_host
    image_id = image_here(ctx, paths, delivery, settings)
    with open_host(ctx.config, 'local') as host:
        _run(ctx, original, paths, host, spec_for(ctx, original, image_id, delivery.tag))


def _pushed_from_here(ctx: Context, paths: JobPaths, delivery, settings: dict, load_here: bool, pushed: bool) -> None:
    from tg_pipeline.image.registry import push
    image_id = image_here(ctx, paths, delivery, settings, load_here=load_here)
    if pushed:
        push(image_id, delivery.registry_reference(), paths.push, auth=ctx.registry_auth(), console=ctx.steps_console())


def _remote(ctx: Context, original: dict, paths: JobPaths, delivery, settings: dict) -> None:
    from tg_pipeline.hosts.host import open_host
    if delivery.build_on == 'local':
        ssh = delivery.transfer == 'ssh'
        _pushed_from_here(ctx, paths, delivery, settings, load_here=not ssh, pushed=not ssh)
    with open_host(ctx.config, 'remote') as host:
        image_id, reference = delivery.to_remote(host, paths, settings, ctx.registry_auth(), ctx.delivery_console())
        _run(ctx, original, paths, host, spec_for(ctx, original, image_id, reference))


def _swarm(ctx: Context, original: dict, paths: JobPaths, delivery, settings: dict) -> None:
    from tg_pipeline.hosts.host import open_host
    delivery.check_swarm()
    if delivery.build_on == 'local':
        _pushed_from_here(ctx, paths, delivery, settings, load_here=True, pushed=True)
    image_id, reference = delivery.for_swarm(paths, lambda: open_host(ctx.config, 'remote'), settings,
                                             ctx.registry_auth(), ctx.delivery_console())
    with open_host(ctx.config, 'swarm') as host:
        _run(ctx, original, paths, host, spec_for(ctx, original, image_id, reference))
