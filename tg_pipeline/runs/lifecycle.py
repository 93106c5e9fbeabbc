"""A run's life, written once for every backend (container runs, swarm runs): run (attached or detached,
Ctrl-C), status, logs (follow = re-attach), stop, result, cleanup.

The state lives on the host, as labels of the run's container or service (see :class:`RunSpec.labels`);
ended runs are collected into ``build/JOB/runs/WHERE/`` (see :mod:`tg_pipeline.paths`). A project sees and
acts on its own runs only (label ``tg_pipeline.project``); another project's run is reached only by its
explicit ``run_id``, is named with its owner, and is never collected here.
"""
from __future__ import annotations

import codecs
import datetime

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.runs.backend import Backend
from tg_pipeline.runs.model import RunHandle, RunResult, reattach_commands
from tg_pipeline.runs.output import OutputSink
from tg_pipeline.console.units import duration
from tg_pipeline.runs.records import (failure, parse_started, record_times, saved_record, saved_result, shown_time,
                                     state_of_record)
from tg_pipeline.runs.results import shown_value
from tg_pipeline.runs.model import RunSpec
from tg_pipeline.runs.container import ContainerBackend


class Scope:
    """Which runs a command sees: this project's (default) or everyone's (``all_projects``), of one job."""

    def __init__(self, job: str, project: str, all_projects: bool = False):
        self.job, self.project, self.all_projects = job, project, all_projects

    def mine(self, handle: RunHandle) -> bool:
        return handle.project == self.project


def run(backend: Backend, spec, paths, *, detach=False, on_interrupt='stop', console: Console = CONSOLE, environ=None):
    """Start a run; unless ``detach``, stream it to its end and collect it. Returns the RunHandle
    (detached) or the RunResult; raises JobFailed when the job failed. A quiet ``console`` shows neither our
    lines nor the job's output (what follows a Ctrl-C shows all the same)."""
    handle = backend.prepare(spec, environ, paths)
    try:  # one handler for Ctrl-C from here on, wherever it lands: even while the engine starts the job
        try:
            handle = backend.start(handle, spec, environ)
        except Exception:  # the engine refused to start it: nothing of it may stay behind
            backend.discard(handle)
            raise
        if detach or backend.announce_attached:
            console.print(backend.start_line(handle))
        if detach:
            console.print(f'  follow it: {handle.commands()}')
            return handle
        return watch_and_collect(backend, handle, paths, console)
    except KeyboardInterrupt:
        interrupted(backend, handle, paths, on_interrupt, console)
        raise


def watch_and_collect(backend: Backend, handle, paths, console: Console = CONSOLE) -> RunResult:
    files = backend.streams_to_files and not handle.label('variants')  # a sweep's are each variant's own
    with OutputSink(paths if files else None, handle.run_id, console) as sink:
        backend.watch(handle, sink)
    result = backend.collect(handle, paths, logs_saved=True)
    result.output = sink.text()
    return judged(result, streamed=not console.quiet)


def judged(result: RunResult, streamed: bool = False) -> RunResult:
    """``result``, or the run's failure raised (``streamed``: its output was shown as it came)."""
    problem = failure(result, streamed)
    if problem is not None:
        problem.result = result
        raise problem
    return result


def interrupted(backend: Backend, handle, paths, on_interrupt: str, console: Console = CONSOLE) -> None:
    """Ctrl-C: leave a started run to itself (``on_interrupt='detach'``), or stop it and collect what it
    left (output folder, logs, state: as ``doit stop`` does), then remove it; said on ``console.err`` even
    when it is quiet."""
    try:
        handle = backend.refresh(handle)
        started = handle.state != 'created'
    except Exception:  # noqa: BLE001 - the host is unreachable: keep what may be running, as asked
        started = True
    if on_interrupt == 'detach' and started:
        if paths is not None:
            paths.dir.mkdir(parents=True, exist_ok=True)
            paths.left(handle.run_id).touch()
        console.warn(f'\nInterrupted: run {handle.run_id} keeps running in {backend.kind} {handle.name} '
                     f'({handle.host})\n  re-attach: {handle.commands()}')
        return
    console.warn(f'\nInterrupted: stopping {backend.kind} {handle.name} ({handle.host})')
    try:
        backend.stop(handle)
        if started and paths is not None:
            backend.collect(handle, paths, logs_saved=False)
            console.warn(f'  what it left is in {paths.run_dir(handle.run_id)}')
        else:
            backend.discard(handle)
    except Exception as e:  # noqa: BLE001 - the interrupt stays what the user sees; say what is left
        backend_error = f'{type(e).__name__}: {e}'
        console.warn(f'  could not stop and collect it ({backend_error}); see: {handle.commands()}')


# --- finding runs --------------------------------------------------------------------------------------
def pick(backend: Backend, scope: Scope, paths, run_id: str | None, running_only=False) -> tuple[str, RunHandle | None]:
    """(run id, its handle on the host or None when only collected here): ``run_id``, or the job's latest."""
    mine = backend.find(scope.job, scope.project)
    ids = sorted(r for r, h in mine.items() if h.running or not running_only)
    if not running_only:
        ids = sorted({*ids, *paths.saved_ids()})
    if run_id:
        if run_id in ids:
            return run_id, mine.get(run_id)
        other = backend.find(None, None).get(run_id)
        if other is not None and (other.running or not running_only):
            return run_id, other
        known = ', '.join(ids[-5:]) or 'none'
        raise PipelineError(f'no {"running " if running_only else ""}run {run_id} of job {scope.job} on '
                            f'{backend.host}',
                            hint=f'known runs (latest last): {known}; see them all with: '
                                 f'doit status job={scope.job} where={backend.where}')
    if not ids:
        raise PipelineError(f'job {scope.job} has no {"running " if running_only else ""}run on {backend.host}',
                            hint=f'start one: doit run_{backend.where} job={scope.job}'
                                 + (' detach=1' if running_only else ''))
    return ids[-1], mine.get(ids[-1])


def pick_running(backend: Backend, scope: Scope, paths, run_id: str | None) -> tuple[str, RunHandle]:
    """:func:`pick` of a running run, which is on the host: its handle is there."""
    found, handle = pick(backend, scope, paths, run_id, running_only=True)
    assert handle is not None, found  # pick chose it among the host's running runs
    return found, handle


def whose(handle: RunHandle) -> str:
    return f'project {handle.project or "?"} of {handle.owner or "?"}'


STATUS_COLUMNS = ('run_id', 'state', 'started', 'duration', 'version', 'owner', 'host')


def status(backend: Backend, scope: Scope, paths, run_id: str | None = None, console: Console = CONSOLE,
           now=None) -> list[dict]:
    """Print (and return) the runs: on the host, and those collected here, as a table. DURATION is the time
    since the start for a running run, from start to end for an ended one (``now``: the time it is now)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if scope.all_projects and not run_id:  # every tg_pipeline run on the host, whatever its project or job
        return everyone(backend, scope, now, console)
    on_host = backend.find(scope.job, scope.project)
    saved = paths.saved_ids()
    if run_id:
        found, handle = pick(backend, scope, paths, run_id)
        on_host, saved = ({found: handle} if handle else {}), ({found} if not handle else set())
    rows = [host_row(on_host[rid], scope, now) if rid in on_host else saved_row(rid, saved_record(paths, rid), backend)
            for rid in sorted({*on_host, *saved})]
    columns = STATUS_COLUMNS + (('gpus',) if any(r.get('gpus') for r in rows) else ())  # the GPUs given, if any
    lines = table(f'# job {scope.job} on {backend.host}: {len(rows)} run(s)', columns, rows)
    console.print('\n'.join(lines + waiting_lines(backend, scope, [on_host[r] for r in sorted(on_host)], paths)))
    return rows


def table(title: str, columns, rows: list[dict]) -> list[str]:
    """``title``, then ``rows`` in aligned ``columns`` under their names in capitals (a missing value: empty)."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ''))) for r in rows]) for c in columns}
    lines = [title, '  '.join(c.upper().replace('_', ' ').ljust(widths[c]) for c in columns).rstrip()]
    return lines + ['  '.join(str(row.get(c, '')).ljust(widths[c]) for c in columns).rstrip() for row in rows]


def everyone(backend: Backend, scope: Scope, now, console: Console = CONSOLE) -> list[dict]:
    """``status all_projects=1``: every run of tg_pipeline's on the host (read only), with its job."""
    found = backend.find(None, None)
    rows = [dict(host_row(found[rid], scope, now), job=found[rid].job or '?') for rid in sorted(found)]
    columns = ('run_id', 'job', *STATUS_COLUMNS[1:]) + (('gpus',) if any(r.get('gpus') for r in rows) else ())
    console.print('\n'.join(table(f'# every project\'s runs on {backend.host}: {len(rows)} run(s)', columns, rows)))
    return rows


def uncollected(h: RunHandle, scope: Scope) -> bool:
    """An ended run of this project still on the host: its output, return value and logs wait there."""
    return not h.running and h.state != 'created' and scope.mine(h)


def waiting_lines(backend: Backend, scope: Scope, handles: list, paths) -> list[str]:
    """Below the table: the ended runs not collected yet (those whose doit process, which followed them, ended
    before they did: killed, or its connection lost), that their data is safe, and the command that collects them
    (``doit cleanup`` collects every ended run before it removes it, whatever its age with ``days=0``)."""
    waiting = [h for h in handles if uncollected(h, scope)]
    if not waiting:
        return []
    orphaned = [h.run_id for h in waiting if paths.out(h.run_id).exists() and not paths.record(h.run_id).exists()
                and not paths.left(h.run_id).exists()]  # (left on purpose: Ctrl-C with on_interrupt=detach)
    latest = waiting[-1]
    # (no word "collected" here: that is the STATE of a run brought here)
    lines = [f'{len(waiting)} ended run(s) still on {backend.host}: their output, return value and logs are safe '
             f'there until brought here. Bring them all: doit cleanup where={backend.where} days=0 (one: doit result '
             f'job={latest.job} where={backend.where} run_id={latest.run_id})']
    if orphaned:
        lines.append(f'the doit process that followed {", ".join(orphaned)} ended before the run did (killed, or its '
                     f'connection lost): the run went on, and waits there')
    return lines


def host_row(h: RunHandle, scope: Scope, now) -> dict:
    start = h.start_time or parse_started(h.started)
    end = now if h.running else h.end_time
    return {'run_id': h.run_id, 'state': h.state, 'started': shown_time(start) or h.started,
            'duration': duration(start, end) if h.state != 'created' else '-', 'version': h.version,
            'host': h.host, 'owner': h.owner if scope.mine(h) else f'{h.owner} ({h.project})',
            'gpus': h.label('gpu_ids')}


def saved_row(run_id: str, record: dict, backend) -> dict:
    start, end = record_times(record)
    return {'run_id': run_id, 'state': state_of_record(record), 'started': shown_time(start),
            'duration': duration(start, end), 'version': record.get('version', ''),
            'host': f'{backend.host} (collected here)', 'owner': record.get('owner', ''),
            'gpus': record.get('gpu_ids') or ','.join(v['gpu_ids'] for v in record.get('variants') or []
                                                      if v.get('gpu_ids'))}


def logs(backend: Backend, scope: Scope, paths, run_id: str | None = None, follow: bool = False,
         console: Console = CONSOLE) -> RunResult | None:
    """Print a run's whole output. With ``follow``, a running run is re-attached: its output streams from
    the first line until it ends, then (this project's run) it is collected like an attached run. Ctrl-C
    while following only detaches: the run goes on."""
    found, handle = pick(backend, scope, paths, run_id)
    if handle is None:
        console.print(f'# job {scope.job}, run {found}, {backend.host}: saved in {paths.dir}')
        _write(console, lambda stream: saved_chunks(paths, found, stream))
        return None
    foreign = '' if scope.mine(handle) else f' ({whose(handle)}: read only)'
    if not follow:
        console.print(f'# job {scope.job}, run {found}, {backend.host}: {backend.kind} {handle.name} '
                      f'({handle.state}){foreign}')
        _write(console, lambda stream: backend.log_chunks(handle, stream))
        return None
    console.print(f'# job {scope.job}, run {found}, {backend.host}: {backend.kind} {handle.name} ({handle.state}), '
                  f'following{foreign}')
    try:
        if foreign:
            with OutputSink(None, found, console) as sink:
                backend.watch(handle, sink)
            return None
        return watch_and_collect(backend, handle, paths, console)
    except KeyboardInterrupt:
        console.warn(f'\nInterrupted: stopped following; run {found} keeps running ({handle.host})\n'
                     f'  re-attach: {handle.commands()}')
        raise


CHUNK = 1 << 20


def saved_chunks(paths, run_id: str, stream: int):
    """The bytes of ``stream`` (1 stdout, 2 stderr) collected here, in chunks: a container run's file, or a
    sweep's logs by variant (a swarm run's all on stdout)."""
    if paths.out(run_id).exists():
        yield from _file_chunks(paths.out(run_id) if stream == 1 else paths.err(run_id))
        return
    suffix = '.out' if stream == 1 else '.err'
    for path in sorted(paths.run_dir(run_id).glob(f'variant_*{suffix}'), key=lambda p: int(p.stem.split('_')[1])):
        if stream == 2 and not path.stat().st_size:
            continue
        yield f'# {path.stem}\n'.encode()
        yield from _file_chunks(path)


def _file_chunks(path):
    if path.exists():
        with open(path, 'rb') as file:
            yield from iter(lambda: file.read(CHUNK), b'')


def saved_logs(paths, run_id: str) -> tuple[bytes, bytes]:
    """(stdout, stderr) collected here, whole (for the Python API, which returns them)."""
    return b''.join(saved_chunks(paths, run_id, 1)), b''.join(saved_chunks(paths, run_id, 2))


def _write(console: Console, chunks_of) -> None:
    """stdout, then (when it has any) ``# stderr`` and stderr, chunk by chunk, decoded for people, all on
    ``console.out``."""
    for stream in (1, 2):
        decoder, started = codecs.getincrementaldecoder('utf-8')('replace'), False
        for chunk in chunks_of(stream):
            if stream == 2 and chunk and not started:
                console.print('# stderr')
            started = started or bool(chunk)
            console.write(decoder.decode(chunk))
        console.write(decoder.decode(b'', final=True))


def stop(backend: Backend, scope: Scope, paths, run_id: str | None = None, console: Console = CONSOLE) -> RunResult | None:
    """Stop a running run (``run_id`` or this project's latest running one); collect this project's."""
    found, handle = pick_running(backend, scope, paths, run_id)
    if not scope.mine(handle) and backend.stop_takes_output:
        raise PipelineError(f'{backend.noun} {found} belongs to {whose(handle)}: stopping it removes its service '
                            f'and the output its owner has not collected yet, so only that project stops it',
                            hint=f'read its output: doit logs job={handle.job} where={backend.where} run_id={found}; '
                                 f'ask its owner to stop it')
    backend.stop(handle)
    if not scope.mine(handle):
        console.print(f'Stopped {backend.noun} {found} of job {handle.job} on {backend.host}; it belongs to '
                      f'{whose(handle)}, who collects it')
        return None
    result = backend.collect(handle, paths, logs_saved=False)
    from tg_pipeline.config.identity import owner
    from tg_pipeline.runs.records import note_stopped
    note_stopped(paths, result, owner())
    ended = f'exit code {result.exit_code}' if not result.variants else \
        f'{sum(1 for v in result.variants if v.get("ok"))}/{len(result.variants)} variants succeeded'
    console.print(f'Stopped {backend.noun} {found} of job {scope.job} on {backend.host} ({ended}); '
                  f'its output and results are in {paths.dir}')
    return result


def result(backend: Backend, scope: Scope, paths, run_id: str | None = None) -> RunResult:
    """The result of an ended run (``run_id`` or the latest), collecting it when it is this project's;
    raises JobFailed for a failed one, and an error saying how to follow one still running."""
    found, handle = pick(backend, scope, paths, run_id)
    if handle is not None:
        if handle.running:
            raise PipelineError(f'run {found} of job {scope.job} is still running on {backend.host}',
                                hint=f'wait for it and get its result: {handle.commands()}')
        if not scope.mine(handle):
            raise PipelineError(f'run {found} belongs to {whose(handle)}: only that project collects its result',
                                hint=f'read its output: doit logs job={handle.job} where={backend.where} '
                                     f'run_id={found}')
        return judged(backend.collect(handle, paths, logs_saved=False))
    saved = saved_result(paths, found, backend.where, backend.host)
    if saved is not None and saved_record(paths, found).get('rebuilt'):
        CONSOLE.warn(f'the record of run {found} ({paths.record(found)}) cannot be read: its outcome is taken from '
                     f'its run folder {paths.run_dir(found)}')
    if saved is None:
        raise PipelineError(f'run {found} of job {scope.job} left no record in {paths.dir}',
                            hint='its container was removed before it was collected; see its output with '
                                 f'doit logs job={scope.job} where={backend.where} run_id={found}')
    return judged(saved)


def cleanup(backend: Backend, project: str, days: float, paths_of, console: Console = CONSOLE) -> list[str]:
    """Remove this project's ended runs older than ``days`` from the host, after collecting them into
    ``paths_of(job)``. Running runs, and other projects' runs, are never touched."""
    if not project:
        raise PipelineError('cleanup needs the project whose runs it removes', hint='run it through doit cleanup')
    limit = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    removed = []
    for run_id, handle in sorted(backend.find(None, project).items()):
        if handle.running:
            continue
        ended = backend.ended_at(handle)  # a container never started: the time it was made
        if ended and ended > limit:
            continue
        backend.collect(handle, paths_of(handle.job), logs_saved=False)
        removed.append(run_id)
        console.print(f'removed run {run_id} of job {handle.job} ({handle.name})')
    console.print(f'{len(removed)} ended run(s) older than {days:g} day(s) removed from {backend.host}')
    newer = [h for run_id, h in backend.find(None, project).items()  # (a removal may still be under way)
             if run_id not in removed and not h.running and h.state != 'created']
    if newer:
        console.print(f'{len(newer)} ended run(s) newer than that stay on {backend.host} (their data is safe there); '
                      f'bring them here too: doit cleanup where={backend.where} days=0')
    return removed


def report(result, console: Console = CONSOLE) -> None:
    """What a person reads at the end of a run: the return value and where everything is kept."""
    hints: list[str] = []
    if result.variants:
        kind = 'Swarm run' if result.where == 'swarm' else 'Sweep run'
        lines = [f'{kind} {result.run_id}: results by variant (run folders in {result.run_dir})']
        for v in result.variants:
            value = shown_value(v.get('run_dir'), result.module, hints) if v.get('ok') else 'None'
            gpus = f', GPUs {v["gpu_ids"]}' if v.get('gpu_ids') else ''
            lines.append(f'  variant {v["variant"]} ({v["label"]}): {v["state"]}, exit {v["exit_code"]}{gpus}, '
                         f'result {value}')
        lines += [f'TIP: {hint}' for hint in dict.fromkeys(hints)]
    else:
        lines = [f'Result: {shown_value(result.run_dir, result.module, hints)}']
        lines += [f'TIP: {hint}' for hint in hints]
        if result.run_dir:
            lines.append(final_line(result))
    console.print('\n'.join(lines))


def final_line(result) -> str:
    """The last line of a run: ``Run ID (local): exit 0; return value, output folder and logs in PATH``
    (PATH relative to the working folder when inside it); '' without a run folder."""
    if not result.run_dir:
        return ''
    import os
    path = str(result.run_dir)
    try:
        relative = os.path.relpath(path)
        path = path if relative.startswith('..') else relative
    except ValueError:  # another drive
        pass
    status = 'exit ?' if result.exit_code is None else f'exit {result.exit_code}'
    status += ' (timed out)' if result.timed_out else ' (out of memory)' if result.oom_killed else ''
    kept = 'return value, output folder and logs' if result.ok else 'output folder and logs'
    return f'Run {result.run_id} ({result.where}): {status}; {kept} in {path}'


__all__ = ['Scope', 'run', 'status', 'logs', 'stop', 'result', 'cleanup', 'report', 'final_line', 'reattach_commands']


# --- on the lifecycle's terms: this project's latest running run, or run_id= -------------------------------
def exec_command(backend: Backend, scope, paths, run_id: str | None, command: str, console: Console = CONSOLE) -> int:
    """Run ``command`` in the running run; print its output and exit code; return the exit code."""
    backend.refuse_reach('exec', scope.job)
    found, handle = pick_running(backend, scope, paths, run_id)
    foreign = '' if scope.mine(handle) else f' (it belongs to {whose(handle)})'
    console.print(f'# exec in run {found} of job {handle.job} ({backend.host}){foreign}: {command}')
    code = backend.exec(handle, command, console)
    console.print(f'# exit code {code}')
    return code


def forward(backend: Backend, scope, paths, run_id: str | None, port: int, local_port: int,
            console: Console = CONSOLE) -> None:
    """Forward ``local_port`` here to ``port`` of the running run until Ctrl-C or its end."""
    backend.refuse_reach('forward', scope.job)
    found, handle = pick_running(backend, scope, paths, run_id)
    backend.forward(handle, port, local_port, console)


def run_container(client, spec: RunSpec, where: str = 'local', paths=None, **kwargs):
    """Run ``spec`` on the engine ``client`` talks to, attached or detached (see :func:`lifecycle.run`):
    the plain-function way in, without a configuration or doit. ``where``: 'local', or 'remote NAME'."""
    from tg_pipeline.hosts.host import Host
    from tg_pipeline.runs import lifecycle
    host = Host(where.split()[0], where, client, remote=where != 'local')
    return lifecycle.run(ContainerBackend(host), spec, paths, **kwargs)
