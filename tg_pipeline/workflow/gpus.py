"""``doit gpus``: a host's GPUs, their memory, and which run holds each; and the check, before any step runs,
that the GPUs a run asks for exist on the host it runs on (``gpus=9`` on a box of 8 stops before a build).

Both read the host's GPUs as a run does (:func:`tg_pipeline.hosts.gpus.inventory`, ``nvidia-smi`` there) and
who holds them (:func:`tg_pipeline.hosts.gpus.holders`, the engine's running containers, whoever started them).
"""
from __future__ import annotations

import contextlib

from tg_pipeline.config.values import parse_gpus
from tg_pipeline.errors import ConfigError
from tg_pipeline.workflow.context import Context

COLUMNS = ('gpu', 'name', 'memory', 'held_by')


def _mib(value) -> str:
    return '?' if value is None else f'{value:g}'


def gpu_rows(gpus, found) -> list[dict]:
    """One row per GPU: index, name, memory used / total (MiB), who holds it (``free``)."""
    by_gpu: dict[str, list] = {}
    for holder in found:
        for index in holder.ids:
            by_gpu.setdefault(index, []).append(holder)
    return [{'gpu': g.index, 'name': g.name, 'memory': f'{_mib(g.used_mib)} / {_mib(g.total_mib)} MiB',
             'held_by': '; '.join(h.who() for h in by_gpu.get(g.index, [])) or 'free'} for g in gpus]


def show_gpus(ctx: Context) -> None:
    """``doit gpus where=local|remote`` (``host=NAME`` alone means where=remote): the host's GPUs as a table."""
    from tg_pipeline.hosts.gpus import holders, inventory, place
    from tg_pipeline.hosts.host import check_where, open_host
    where = check_where(str(ctx.variables.get('where') or ('remote' if ctx.variables.get('host') else 'local')))
    if where == 'swarm':
        raise ConfigError('doit gpus looks at one host, and a swarm\'s GPUs are its nodes\' generic resources',
                          key='where', hint='where=local or where=remote (host=NAME); a swarm\'s nodes: docker node '
                                            'inspect NODE --format "{{json .Description.Resources}}"')
    console = ctx.run_console()
    with open_host(ctx.config, where) as host:
        gpus = inventory(host)
        if gpus is None:
            console.print(f'{place(host)}: no NVIDIA GPU (nvidia-smi is not installed there)')
            return
        rows = gpu_rows(gpus, holders(host.docker, gpus))
    ctx.results['gpus'] = rows
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in COLUMNS}
    free = sum(1 for r in rows if r['held_by'] == 'free')
    lines = [f'# {place(host)}: {len(rows)} GPU(s), {free} free',
             '  '.join(c.upper().replace('_', ' ').ljust(widths[c]) for c in COLUMNS).rstrip()]
    lines += ['  '.join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    console.print('\n'.join(lines))


@contextlib.contextmanager
def _shell_host(config, where: str):
    """A host to run nvidia-smi on, before any step: here, or over the SSH login started early (left open for the
    run step, which takes it)."""
    from tg_pipeline.hosts.host import Host
    if where == 'local':
        yield Host('local', 'local', None)
        return
    from tg_pipeline.ssh import early
    remote = early.peek(config)
    if remote is not None:
        yield Host('remote', f'remote {remote.name}', None, remote=True, connection=remote.connection)
        return
    from tg_pipeline.ssh.connection import Remote, RemoteTarget
    with Remote(RemoteTarget.from_config(config.remote)) as remote:
        yield Host('remote', f'remote {remote.name}', None, remote=True, connection=remote.connection)


def check_early(config, jobs: list[str], steps: list[str]) -> None:
    """Before any step: the GPUs each job of a ``run_local`` / ``run_remote`` asks for exist on that host (a host
    without nvidia-smi is left to its engine, which says it has no GPU)."""
    from tg_pipeline.hosts.gpus import inventory, place
    from tg_pipeline.runs.allocation import request_problem
    for where in ('local', 'remote'):
        asking = [job for job in jobs if parse_gpus(config.job(job).run.gpus).wanted] if f'run_{where}' in steps \
            else []
        if not asking:
            continue
        with _shell_host(config, where) as host:
            gpus = inventory(host)
            if gpus is None:  # no nvidia-smi there: its engine says it has no GPU
                continue
            for job in asking:
                problem = request_problem(config.job(job).run.gpus, gpus, place(host), job)
                if problem is not None:
                    raise problem
