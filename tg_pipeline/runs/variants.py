"""One variant of a sweep (``variant=N``) for ``status``, ``logs``, ``stop`` and ``result``, and the variants of a
sweep as a table (``doit status run_id=RUN_ID`` of a sweep).

A sweep on one host (:mod:`.sweep`) keeps each variant in its own container while it runs, then in
``RUN_ID/variant_N*`` here; a swarm run's variants are known once it is collected (its record and
``RUN_ID/variant_N/``): there, ``variant=N`` reads what was collected, and ``stop`` stops the whole run.
"""
from __future__ import annotations

import datetime

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.console.units import duration
from tg_pipeline.errors import PipelineError
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.model import RunHandle, RunResult
from tg_pipeline.runs.records import parse_started, record_times, saved_result, shown_time
from tg_pipeline.runs.sweep import find_sweep, is_sweep, labels_of, no_such_variant, variant_paths

COLUMNS = ('variant', 'label', 'state', 'started', 'duration', 'gpus')


class Picked:
    """A sweep (its run id, its handle on the host or None when collected) and one of its variants there."""

    def __init__(self, backend, scope, paths, run_id: str | None, index: int | None):
        self.backend, self.paths = backend, paths
        self.run_id, self.handle = lifecycle.pick(backend, scope, paths, run_id)
        record = paths.read_record(self.run_id)
        if self.handle is not None and (is_sweep(self.handle) or self.handle.labels.get('variants')):
            self.labels = labels_of(self.handle)
        elif record.get('variants'):
            self.labels = [v.get('label', str(v.get('variant'))) for v in record['variants']]
        else:
            raise PipelineError(f'run {self.run_id} of job {scope.job} is no sweep: it has no variants',
                                hint=f'without variant=, or with the run id of a sweep: doit status job={scope.job} '
                                     f'where={backend.where} lists the runs')
        self.index = index
        if index is not None and not 0 <= index < len(self.labels):
            raise no_such_variant(self.run_id, index, len(self.labels))
        self.record = record
        self.sub = variant_paths(paths, self.run_id)
        self.on_host = self.handle is not None and is_sweep(self.handle)

    def container(self, index: int) -> RunHandle | None:
        """The variant's container on the host (a sweep on one host still there), or None."""
        if not self.on_host:
            return None
        item = find_sweep(self.backend.client, self.run_id).variants.get(index)
        return self.backend.variant_handle(item) if item is not None else None

    def name(self, index: int) -> str:
        return f'variant {index} ({self.labels[index]}) of sweep run {self.run_id}'

    @property
    def job(self) -> str:
        """The sweep's job: its handle's on the host, else its record's."""
        return self.handle.job if self.handle else self.record.get('job')


def step(step_name: str, backend, scope, paths, run_id: str | None, index: int | None, console: Console = CONSOLE,
         follow: bool = False):
    """``doit STEP variant=N`` (``index``), or the variants' table of ``status`` for a sweep."""
    picked = Picked(backend, scope, paths, run_id, index)
    if step_name == 'status':
        return table(picked, console)
    assert index is not None, step_name  # (wants_variants: logs, stop and result of a sweep come with variant=N)
    if step_name == 'logs':
        return logs(picked, index, console, follow)
    if step_name == 'stop':
        return stop(picked, scope, index, console)
    return result(picked, scope, index)


def rows(picked: Picked, now=None) -> list[dict]:
    """Each variant as a row: from its container on the host, what was collected here, or its place in the queue."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    entries = {v.get('variant'): v for v in picked.record.get('variants') or []}
    found = find_sweep(picked.backend.client, picked.run_id) if picked.on_host else None
    found_rows = []
    for index, label in enumerate(picked.labels):
        row = {'variant': index, 'label': label, 'started': '', 'duration': '', 'gpus': ''}
        item = found.variants.get(index) if found else None
        saved = picked.sub.read_record(f'variant_{index}')
        if item is not None:
            handle = picked.backend.refresh(picked.backend.variant_handle(item))
            start = handle.start_time or parse_started(handle.started)
            row.update(state=handle.state, started=shown_time(start), gpus=handle.label('gpu_ids'),
                       duration=duration(start, now if handle.running else handle.end_time)
                       if handle.state != 'created' else '-')
        elif saved:
            start, end = record_times(saved)
            row.update(state=f'collected, exited {saved.get("exit_code")}', started=shown_time(start),
                       duration=duration(start, end), gpus=saved.get('gpu_ids', ''))
        elif index in entries:
            entry = entries[index]
            row.update(state=f'collected, {entry.get("state")}' + (f' (exit {entry["exit_code"]})'
                                                                    if entry.get('exit_code') is not None else ''),
                       gpus=entry.get('gpu_ids', ''))
        else:
            row['state'] = 'queued' if found is not None and found.marker is not None else 'not started'
        found_rows.append(row)
    return found_rows


def table(picked: Picked, console: Console = CONSOLE) -> list[dict]:
    """The variants of a sweep as a table (``variant=N``: that one's row only)."""
    found = rows(picked)
    if picked.index is not None:
        found = [found[picked.index]]
    columns = [c for c in COLUMNS if c != 'gpus' or any(r['gpus'] for r in found)]
    widths = {c: max([len(c)] + [len(str(r[c])) for r in found]) for c in columns}
    lines = [f'# sweep run {picked.run_id} of job {picked.job} on {picked.backend.host}: {len(picked.labels)} variants',
             '  '.join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ['  '.join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in found]
    console.print('\n'.join(lines))
    return found


def logs(picked: Picked, index: int, console: Console = CONSOLE, follow: bool = False) -> None:
    """One variant's whole output: from its container (``follow``: until it ends), or as collected here."""
    from tg_pipeline.runs.lifecycle import _file_chunks, _write
    from tg_pipeline.runs.output import OutputSink
    handle = picked.container(index)
    if handle is not None:
        console.print(f'# {picked.name(index)}, {picked.backend.host}: container {handle.name} ({handle.state})'
                      + (', following' if follow and handle.running else ''))
        if follow and handle.running:
            with OutputSink(None, picked.run_id, console) as sink:
                picked.backend.inner_watch(handle, sink)
            return
        _write(console, lambda stream: picked.backend.log_chunks(handle, stream))
        return
    name = f'variant_{index}'
    out, err = picked.sub.out(name), picked.sub.err(name)
    if not out.exists() and not err.exists():
        if picked.on_host:
            raise PipelineError(f'{picked.name(index)} has not started yet', hint='see the queue: doit status '
                                f'job={picked.job} where={picked.backend.where} run_id={picked.run_id}')
        raise PipelineError(f'{picked.name(index)} left no output here ({picked.sub.dir})')
    console.print(f'# {picked.name(index)}, {picked.backend.host}: saved in {picked.sub.dir}')
    _write(console, lambda stream: _file_chunks(out if stream == 1 else err))


def stop(picked: Picked, scope, index: int, console: Console = CONSOLE) -> RunResult | None:
    """Stop one variant of a sweep on one host (the others go on); this project's is collected."""
    if picked.backend.where == 'swarm':
        raise PipelineError(f'a swarm run\'s tasks stop together: variant {index} of swarm run {picked.run_id} '
                            f'cannot stop alone', hint=f'stop the whole run: doit stop job={scope.job} where=swarm '
                                                       f'run_id={picked.run_id}')
    handle = picked.container(index)
    if handle is None or not handle.running or picked.handle is None:  # (a container on the host: the sweep's there)
        raise PipelineError(f'{picked.name(index)} is not running', hint=f'see its variants: doit status '
                            f'job={scope.job} where={picked.backend.where} run_id={picked.run_id}')
    picked.backend.stop_one(handle)
    if not scope.mine(picked.handle):
        console.print(f'Stopped {picked.name(index)} on {picked.backend.host}; it belongs to project '
                      f'{picked.handle.project} of {picked.handle.owner}, who collects it')
        return None
    collected = collect_one(picked, index, stopped=True)
    console.print(f'Stopped {picked.name(index)} on {picked.backend.host} (exit code {collected.exit_code}); the '
                  f'other variants go on; its output and results are in {picked.sub.dir}')
    return collected


def collect_one(picked: Picked, index: int, stopped: bool = False) -> RunResult:
    """An ended variant's files into ``RUN_ID/variant_N*`` here, its container removed (``stopped``: by a
    ``stop variant=N``, which its record says)."""
    item = find_sweep(picked.backend.client, picked.run_id).variants[index]
    found, _ = picked.backend.collect_variant(item, picked.sub, index, picked.labels[index])
    if stopped:
        record = picked.sub.read_record(f'variant_{index}')
        picked.sub.write_record(f'variant_{index}', {**record, 'stopped': True})
    return found


def result(picked: Picked, scope, index: int) -> RunResult:
    """One variant's result: as collected here, or collected now from its ended container (this project's)."""
    name = f'variant_{index}'
    if picked.sub.record(name).exists():
        found = saved_result(picked.sub, name, picked.backend.where, picked.backend.host)
        if found is None:  # a record that cannot be read, and neither its run folder nor its output
            raise PipelineError(f'the record of {picked.name(index)} ({picked.sub.record(name)}) cannot be read, and '
                                f'neither its run folder nor its output is in {picked.sub.dir}',
                                hint=f'run the sweep again: doit run_{picked.backend.where} job={scope.job}')
        found.run_id = f'{picked.run_id} variant {index}'  # for people: its final line
        return lifecycle.judged(found)
    entry = next((v for v in picked.record.get('variants') or [] if v.get('variant') == index), None)
    if entry is not None:  # a swarm run's variant: its run folder and log, collected with the run
        found = RunResult(run_id=picked.run_id, where=picked.backend.where, host=picked.backend.host,
                          job=picked.record.get('job', scope.job), module=picked.record.get('module', ''),
                          exit_code=entry.get('exit_code'), run_dir=_folder(entry.get('run_dir')),
                          timed_out=bool(entry.get('timed_out')), max_runtime_s=entry.get('max_runtime_s') or 0)
        return lifecycle.judged(found)
    handle = picked.container(index)
    if handle is None or picked.handle is None:  # (a container on the host: the sweep's there)
        raise PipelineError(f'{picked.name(index)} has not started yet', hint='see the queue: doit status '
                            f'job={scope.job} where={picked.backend.where} run_id={picked.run_id}')
    if handle.running:
        raise PipelineError(f'{picked.name(index)} is still running on {picked.backend.host}',
                            hint=f'follow it to its end: doit logs job={scope.job} where={picked.backend.where} '
                                 f'run_id={picked.run_id} variant={index} follow=1, then ask again')
    if not scope.mine(picked.handle):
        raise PipelineError(f'{picked.name(index)} belongs to project {picked.handle.project} of '
                            f'{picked.handle.owner}: only that project collects its result',
                            hint=f'read its output: doit logs job={scope.job} where={picked.backend.where} '
                                 f'run_id={picked.run_id} variant={index}')
    found = collect_one(picked, index)
    found.run_id = f'{picked.run_id} variant {index}'
    return lifecycle.judged(found)


def _folder(text):
    from pathlib import Path
    return Path(text) if text and Path(text).is_dir() else None


def variant_number(text: str | None) -> int | None:
    """``variant=N`` as a number (None when not given); an error for anything else."""
    if text is None or text == '':
        return None
    if not str(text).isdigit():
        from tg_pipeline.errors import ConfigError
        raise ConfigError(f'variant={text} is not a variant number', key='variant',
                          hint='variants count from 0: variant=0 is the first of the sweep')
    return int(text)


def wants_variants(step_name: str, variables: dict, backend, scope, paths) -> bool:
    """Whether a lifecycle command is about the variants of a sweep: ``variant=N``, or ``status run_id=`` of a
    sweep on one host."""
    if variables.get('variant') not in (None, ''):
        return True
    if step_name != 'status' or not variables.get('run_id') or backend.where == 'swarm':
        return False  # a swarm run's status is its row, as it always was
    run_id, handle = lifecycle.pick(backend, scope, paths, variables['run_id'])
    if handle is not None and is_sweep(handle):
        return True
    return bool(paths.read_record(run_id).get('variants'))
