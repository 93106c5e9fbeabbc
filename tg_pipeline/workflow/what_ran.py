"""The actions of the commands on what runs ran (:mod:`tg_pipeline.provenance`): ``doit show``, ``doit runs``,
``doit diff``, ``doit export``, and the store's part of ``doit cleanup``. (``doit rerun`` is
:mod:`tg_pipeline.workflow.rerun`.)"""
from __future__ import annotations

from pathlib import Path

from doit.exceptions import TaskError, TaskFailed

from tg_pipeline.errors import ConfigError, PipelineError
from tg_pipeline.provenance import record as records
from tg_pipeline.workflow.context import Context
from tg_pipeline.workflow.recording import cut, store_of

WHERE_KEPT = ('local', 'remote', 'swarm', 'attached')


def find_run(ctx: Context, name: str = 'run_id', command: str = 'show') -> tuple[Path, dict]:
    """(path, record) of the run ``name=`` names: its id, or the start of it when only one run's id starts so."""
    run_id = str(ctx.variables.get(name) or '').strip()
    example = 'run_a=RUN_ID run_b=RUN_ID' if command == 'diff' else f'{name}=RUN_ID'
    if not run_id:
        raise ConfigError(f'doit {command} needs a run: {example}', key=name,
                          hint='doit runs lists the runs kept here, with their ids')
    found = records.find(ctx.config.build_dir, run_id)
    if found is not None:
        return found
    kept = records.every(ctx.config.build_dir)
    matches = [item for item in kept if item[1]['run_id'].startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    latest = ', '.join(r['run_id'] for _, r in kept[-3:]) or 'none'
    problem = f'{len(matches)} runs kept here have an id starting with {run_id}' if matches else \
        f'no run {run_id} is kept in {ctx.config.build_dir}'
    raise PipelineError(problem, hint=f'doit runs lists the runs kept here (the latest: {latest})')


def summary(path: Path, record: dict, ended: dict) -> str:
    """One line about a run's outcome: what its end said, or what its run folder holds."""
    if ended.get('result'):
        return ended['result']
    run_dir = path.parent.parent / record['run_id']
    if ended.get('variants'):
        ok = sum(1 for v in ended['variants'] if v.get('ok'))
        return f'{ok}/{len(ended["variants"])} variants succeeded'
    if ended.get('exit_code') == 0:
        from tg_pipeline.runs.results import shown_value
        return cut(shown_value(run_dir if run_dir.is_dir() else None, (record.get('identity') or {}).get('module', '')))
    if ended.get('exit_code') is not None:
        from tg_pipeline.runs.results import read_text
        from tg_pipeline.runtime import protocol
        lines = (read_text(run_dir, protocol.TRACEBACK_FILE) or '').strip().splitlines()
        return cut('failed' + (f': {lines[-1]}' if lines else ''))
    return ''


def show(ctx: Context) -> None:
    """``doit show run_id=...``: every part of what a run ran."""
    from tg_pipeline.provenance.shown import show as text
    path, record = find_run(ctx)
    print(text(path, record, store_of(ctx), summary(path, record, records.ending(path, record))))


def runs(ctx: Context) -> None:
    """``doit runs [where=...] [job=...]``: one line per run kept here, oldest first."""
    from tg_pipeline.provenance.shown import runs_table
    where = str(ctx.variables.get('where') or '') or None
    if where is not None and where not in WHERE_KEPT:
        raise ConfigError(f'where={where} is not local, remote, swarm or attached', key='where',
                          hint='doit runs where=local (or remote, swarm, attached); without where=, every run')
    job = ctx.variables.get('job')
    rows = []
    for path, record in records.every(ctx.config.build_dir, where):
        if not job or record.get('job') == job:
            ended = records.ending(path, record)
            rows.append((record, ended, summary(path, record, ended)))
    if not rows:
        print(f'no run is kept in {ctx.config.build_dir}' + (f' for where={where}' if where else '')
              + (f' of job {job}' if job else ''))
        return
    print(runs_table(rows))


def diff(ctx: Context):
    """``doit diff run_a=... run_b=...``: what differs between two runs; the task fails (exit status 1) when
    anything does, as ``diff`` does, and errs (exit status 2) when it cannot compare them."""
    from tg_pipeline.errors import report
    from tg_pipeline.provenance.compare import compare
    try:
        (_, a), (_, b) = find_run(ctx, 'run_a', 'diff'), find_run(ctx, 'run_b', 'diff')
        same, text = compare(store_of(ctx), a, b)
    except PipelineError as e:
        ctx.errors.append(e)
        report(e)
        return TaskError(e.message.splitlines()[0], report=False)
    print(text)
    return None if same else TaskFailed('the two runs differ', report=False)


def export(ctx: Context) -> None:
    """``doit export run_id=... dest=DIR``: the run's source tree, and beside it what else it ran."""
    from tg_pipeline.provenance import sources
    path, record = find_run(ctx, command='export')
    dest = Path(str(ctx.variables.get('dest') or '')).expanduser()
    if not str(ctx.variables.get('dest') or ''):
        raise ConfigError('doit export needs the folder to write to: dest=DIR', key='dest',
                          hint=f'e.g. doit export run_id={record["run_id"]} dest=run-{record["run_id"][:15]}')
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise PipelineError(f'{dest} exists and is not an empty folder: export writes into a new (or empty) one',
                            hint=f'pick another: dest={dest}-2, or remove it first')
    store = store_of(ctx)
    sdist = store.path('sdist', (record.get('code') or {}).get('sdist') or 'missing')
    if not sdist.exists():
        raise PipelineError(f'the sdist of run {record["run_id"]} is not in {store.root}',
                            hint='it was removed by hand: nothing else holds that run\'s code')
    files = sources.read_sdist(sdist)
    extras = {'configuration.toml': store.read('config', record.get('config') or ''),
              'uncommitted.patch': store.read('patch', (record.get('git') or {}).get('patch') or ''),
              'notebook_cells.py': store.read('cells', (record.get('code') or {}).get('cells') or ''),
              'record.json': path.read_bytes(), 'sdist.tar.gz': sdist.read_bytes()}
    written = sources.export(files, dest, {k: v for k, v in extras.items() if v})
    roots = sorted({Path(p).parts[0] for p in files.code})
    print(f'run {record["run_id"]} of job {record.get("job")}: {len(files.code)} source file(s) '
          f'({", ".join(roots) or "none"}) written to {dest}; its payload, configuration and record in '
          f'{dest / sources.EXPORT_EXTRAS} ({len(written)} files in all)')


def sweep(ctx: Context) -> None:
    """``doit cleanup``'s part: remove what the store keeps that no kept run references; say what it freed."""
    from tg_pipeline.console.units import format_bytes
    store = store_of(ctx)
    if not store.root.is_dir():
        return
    with store.lock(exclusive=True):
        kept = records.every(ctx.config.build_dir)
        referenced = set().union(*(records.references(r) for _, r in kept)) if kept else set()
        removed, freed = store.sweep(referenced | dependency_images(ctx.config.build_dir))
    ctx.run_console().print(f'what ran: {removed} kept source(s), configuration(s) or dependency set(s) that none of '
                            f'the {len(kept)} kept run(s) references removed, {format_bytes(freed)} freed '
                            f'({store.root})')


def dependency_images(build_dir: Path) -> set[tuple[str, str]]:
    """The dependency sets of the dependency images the jobs build on now (build/JOB/deps.json): kept for the
    next run, which would read them again."""
    from tg_pipeline.image.job_image import deps_records
    from tg_pipeline.provenance.dependencies import image_key
    found = set()
    for path in Path(build_dir).glob('*/deps.json'):
        for entry in deps_records(path).values():
            found.add(('deps', image_key(entry['image_id'])))
    return found
