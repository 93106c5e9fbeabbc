"""The actions of the commands that reach into runs already started or clean up after them: ``doit exec``,
``doit forward`` (into a running job's container) and ``doit cleanup`` (this project's ended runs, unused images
and caches on a host). Like :mod:`tg_pipeline.workflow.build_steps`, each takes the :class:`~tg_pipeline.workflow.build_steps.Context`."""
from __future__ import annotations

from tg_pipeline.errors import ConfigError, PipelineError
from tg_pipeline.paths import JobPaths
from tg_pipeline.workflow.context import Context


def reach_step(ctx: Context, job: str, step: str) -> None:
    """exec / forward: into this project's latest running run of the job (or run_id=), where= names."""
    import sys
    from tg_pipeline.runs import backend_on, lifecycle
    from tg_pipeline.runs.lifecycle import exec_command, forward
    if not ctx.variables.get('job') and f'{step}:{job}' not in sys.argv[1:]:  # not once per job of the project
        raise ConfigError(f'doit {step} needs the job: job=NAME', key='job',
                          hint=f'e.g. doit {step} job={job} ' + ('cmd="nvidia-smi"' if step == 'exec' else 'port=6006'))
    where, run_id = ctx.where(), ctx.variables.get('run_id') or None
    scope, paths = lifecycle.Scope(job, ctx.config.project), ctx.paths(job).runs(where)
    if step == 'exec' and not ctx.variables.get('cmd'):
        raise ConfigError('doit exec needs the command: cmd="..."', key='cmd',
                          hint=f'e.g. doit exec job={job} where={where} cmd="nvidia-smi"')
    port = number(ctx, 'port', '0', int, hint=f'e.g. doit forward job={job} where={where} port=6006') \
        if step == 'forward' else 0
    if step == 'forward' and not 0 < port < 65536:
        raise ConfigError(f'doit forward needs the port of the job to reach: port=1..65535, not {port}', key='port',
                          hint=f'e.g. doit forward job={job} where={where} port=6006')
    with backend_on(ctx.config, where) as kind:
        if step == 'forward':
            local = number(ctx, 'local_port', str(port), int, hint='e.g. local_port=16006')
            forward(kind, scope, paths, run_id, port, local, ctx.run_console())
            return
        code = exec_command(kind, scope, paths, run_id, ctx.variables['cmd'], ctx.run_console())
    if code != 0:
        raise PipelineError(f'the command exited with code {code} in job {job}\'s run ({where})')


def number(ctx: Context, name: str, default: str, kind=float, hint: str = ''):
    text = ctx.variables.get(name, default)
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f'{name}={text} is not a number', key=name, hint=hint)
    return value


def cleanup(ctx: Context) -> None:
    """This project's ended runs older than days=N (collected first), then its job images that no run
    uses, keeping the newest keep=N per job (default 2), on the host where= names."""
    from tg_pipeline.runs import backend_for
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.image.housekeeping import prune_job_images
    from tg_pipeline.runs import lifecycle
    days = number(ctx, 'days', '7', hint='e.g. days=7 (days=0: all ended runs)')
    keep = number(ctx, 'keep', '2', int, hint='e.g. keep=2: the newest images per job that stay')
    where = ctx.where()
    with open_host(ctx.config, where) as host:
        lifecycle.cleanup(backend_for(host, ctx.config), ctx.config.project, days,
                          lambda job: JobPaths(ctx.config.build_dir, job).runs(where), ctx.run_console())
        if where != 'swarm':
            prune_job_images(host.docker, ctx.config.project, keep=keep, console=ctx.run_console())
        if ctx.flag('caches'):
            from tg_pipeline.runs.resources import remove_caches
            remove_caches([host.docker, *host.nodes], ctx.config.project, host.name, ctx.run_console())
    from tg_pipeline.workflow.what_ran import sweep
    sweep(ctx)  # what ran: the kept sources no kept run references


def draw_graph(ctx: Context, tasks: dict, probe) -> None:
    """``doit graph``: the chosen jobs' steps (``tasks``: step -> sub-task dicts), marked by ``probe`` (doit's
    own up-to-date answers), as build/graph.dot and .png."""
    from tg_pipeline.workflow.graph import write_graph
    write_graph(tasks, ctx.config.build_dir / 'graph.dot', probe, everything=ctx.flag('all'),
                files=ctx.flag('files'), root=ctx.config.root)


def show_config(ctx: Context, jobs: list[str]) -> None:
    from tg_pipeline.config.describe import describe
    from tg_pipeline.ssh.transport import describe as ssh_client
    print(describe(ctx.config, jobs, notes={'remote': [ssh_client(ctx.config.remote)]}))


def check_remote(ctx: Context) -> None:
    from tg_pipeline.workflow.preflight import check_remote as preflight
    from tg_pipeline.ssh.settings import RemoteTarget
    failed = preflight(RemoteTarget.from_config(ctx.config.remote, ctx.config.project), ctx.config.registry.address,
                       ctx.registry_auth(), ctx.run_console())
    if failed:
        raise PipelineError(f'{failed} preflight check(s) failed (see the TIP lines above)')
