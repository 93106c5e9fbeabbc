"""How an ended run is judged and remembered: its exit status, its failure, its saved record, and its times."""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable

from tg_pipeline.errors import JobFailed
from tg_pipeline.runs.model import RunResult, Variant
from tg_pipeline.runtime import protocol
from tg_pipeline.runs.results import read_text


def recorded_exit(run_dir) -> dict:
    """What the entry point recorded about the job's end (``exit.json``): exit code, reason; {} without it."""
    recorded = read_text(run_dir, protocol.EXIT_FILE)
    try:
        found = json.loads(recorded) if recorded else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


RESULT_HINT = ('return plain data (numbers, strings, lists, dicts, arrays; list(...) of a generator), or write what '
               'you need into the output folder, os.environ["TG_PIPELINE_OUTPUT"]: it comes back with the run')


def result_not_kept(run_dir) -> str | None:
    """Why the job's return value could not be kept (``cannot pickle 'generator' object``), or None: the entry
    point's record (``exit.json``, reason ``protocol.REASON_RESULT``)."""
    recorded = recorded_exit(run_dir)
    if recorded.get('reason') != protocol.REASON_RESULT:
        return None
    return str(recorded.get('error') or 'it cannot be pickled')


def sys_exit_message(job: str, code: int | None, where: str) -> str:
    """The error of a job that ended itself with ``sys.exit(N)``, N not 0."""
    return f'job {job} exited with status {code}: it called sys.exit ({where} run)'


def exit_status(container_code, run_dir) -> tuple[int | None, int | None]:
    """(the job's exit code, the signal that killed it or None). The entry point records the job's own
    status in its run folder; without it (killed, or the job died before the entry point ran) the
    container's exit code stands, and a code above 128 means a signal."""
    code = recorded_exit(run_dir).get('exit_code')
    if isinstance(code, int):
        return code, None
    if isinstance(container_code, int) and container_code > 128:
        return container_code, container_code - 128
    return container_code, None


def time_limit_hit(run_dir) -> float | None:
    """The time limit the run was stopped at (the entry point's record), or None."""
    recorded = recorded_exit(run_dir)
    if recorded.get('reason') != protocol.REASON_TIMEOUT:
        return None
    limit = recorded.get('max_runtime_s')
    return float(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) else 0.0


def failure(result: RunResult, streamed: bool = False) -> JobFailed | None:
    """The :class:`JobFailed` a failed run raises (None when it succeeded). ``streamed``: the job's output (and so
    its traceback) was shown as it came; the error then sums the traceback up in one line instead of repeating it."""
    if result.ok:
        return None
    if result.stopped:
        return JobFailed(f'job {result.job} was stopped by {stopped_text(result.stopped)} (doit stop; {result.host} '
                         f'run): its output and results so far are kept', exit_code=result.exit_code)
    if result.variants:
        return variant_failure(result)
    if result.timed_out:
        return JobFailed(f'job {result.job} ran out of its time limit of {result.max_runtime_s:g} s (max_runtime_s; '
                         f'{result.host} run): it was stopped, its output and results are kept',
                         exit_code=result.exit_code, output=result.output,
                         hint=f'raise max_runtime_s in [run] or [jobs.{result.job}], or on the command line: '
                              f'max_runtime_s={2 * result.max_runtime_s:g} (0 = no limit)')
    if result.oom_killed:
        return JobFailed(f'job {result.job} was killed for exceeding its memory limit of {result.memory_gb:g} GB '
                         f'({result.host} run)', exit_code=result.exit_code, output=result.output,
                         hint=f'raise memory_gb in [run] or [jobs.{result.job}] (or memory=... on the command line)')
    if (kept := result_not_kept(result.run_dir)) is not None:
        return JobFailed(f'job {result.job} returned a value that cannot be kept ({result.host} run): {kept}',
                         exit_code=result.exit_code, hint=RESULT_HINT)  # its output was shown as it came
    if result.signal and result.engine_restarted:
        again = shown_time(parse_time(result.engine_restarted))
        return JobFailed(f'job {result.job} was killed by signal {result.signal} ({result.host} run): the Docker '
                         f'engine stopped under it, and started again at {again}',
                         exit_code=result.exit_code,
                         hint=f'what it wrote until then is kept with its logs; run it again: doit run_{result.where} '
                              f'job={result.job}')
    if result.signal:
        return JobFailed(f'job {result.job} was killed by signal {result.signal} ({result.host} run)',
                         exit_code=result.exit_code, output=result.output)
    if recorded_exit(result.run_dir).get('reason') == protocol.REASON_SYS_EXIT:
        return JobFailed(sys_exit_message(result.job, result.exit_code, result.host), exit_code=result.exit_code,
                         output=result.output)
    trace = result.traceback
    built = not_built(trace)
    if built is not None:  # the entry point could not build the job from pipeline.toml's record: its paragraph
        problem, hint = built
        return JobFailed(f'job {result.job} could not start ({result.host} run): {problem}',
                         exit_code=result.exit_code, hint=hint)
    # the output was streamed already: the error sums the job's traceback up; else it quotes it
    return JobFailed(f'job {result.job} failed ({result.host} run)' + traceback_summary(trace),
                     exit_code=result.exit_code, output=None if streamed and trace else trace or result.output,
                     remote_traceback=trace)


def traceback_summary(trace: str | None) -> str:
    """``: ValueError: bad rate at jobs/train.py:42``: a traceback's last line and its last frame, or ''."""
    import re
    lines = [line for line in (trace or '').splitlines() if line.strip()]
    if not lines:
        return ''
    frames = re.findall(r'^  (\S.*?:\d+), in ', trace or '', re.M)
    return f': {lines[-1].strip()}' + (f' at {frames[-1]}' if frames else '')


def not_built(trace: str | None) -> tuple[str, str] | None:
    """(problem, hint) of the entry point's paragraph for a job it could not build (see runtime.reference)."""
    if not trace or not trace.startswith('ERROR: '):
        return None
    problem, _, hint = trace[len('ERROR: '):].partition('\nTIP: ')
    return problem.strip(), hint.strip()


def note_stopped(paths, result: RunResult, by: str, now=None) -> None:
    """A run this project stopped (``doit stop``): who and when, in its record and in ``result``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    result.stopped = {'by': by, 'at': now.isoformat(timespec='seconds')}
    record = paths.read_record(result.run_id)
    if record:
        paths.write_record(result.run_id, {**record, 'stopped': result.stopped})


def stopped_text(stopped: dict) -> str:
    """``alice at 2026-12-07 01:50:03`` (local time)."""
    return f'{stopped.get("by") or "?"} at {shown_time(parse_started(stopped.get("at"))) or stopped.get("at")}'


def variant_failure(result: RunResult) -> JobFailed:
    """A swarm run's failed variants, one by one; the first one's traceback quoted (a service's log stream may
    miss a task's last lines, so it is not taken as said)."""
    failed = [v for v in result.variants if not v.get('ok')]
    names = ', '.join(f'variant {f["variant"]} ({f["label"]}): {f["state"]}'
                      + (f' exit {f["exit_code"]}' if f['exit_code'] is not None else '')
                      + (f' ({f["error"]})' if f['error'] and not f['error'].startswith('task: non-zero exit') else '')
                      + (f' (ran out of its time limit of {f["max_runtime_s"]:g} s)' if f.get('timed_out') else '')
                      for f in failed)
    first = failed[0]
    kind = 'swarm run' if result.where == 'swarm' else 'sweep run'
    return JobFailed(f'{len(failed)} variant(s) of job {result.job} failed in {kind} {result.run_id} '
                     f'({result.host}): {names}', exit_code=first['exit_code'], output=first.get('traceback'),
                     remote_traceback=first.get('traceback'),
                     hint=f'every variant\'s log and results: doit status job={result.job} where={result.where} '
                          f'run_id={result.run_id}')


def saved_record(paths, run_id: str) -> dict:
    """The record of a run collected into ``paths``; when it is missing or cannot be read (of no record's shape)
    but the run's folder or output was collected, the record rebuilt from them (``rebuilt``: True; the exit status
    the entry point kept in the run folder); {} when nothing of the run is here."""
    record = paths.read_record(run_id)
    if record:
        return record
    run_dir = paths.run_dir(run_id)
    if not run_dir.is_dir() and not paths.out(run_id).exists():
        return {}
    recorded = recorded_exit(run_dir)
    code = recorded.get('exit_code')
    limit = time_limit_hit(run_dir)
    return {'run_id': run_id, 'exit_code': code if isinstance(code, int) else None, 'rebuilt': True,
            'timed_out': limit is not None, 'max_runtime_s': limit or 0,
            'result_error': result_not_kept(run_dir)}


def saved_result(paths, run_id: str, where: str, host: str) -> RunResult | None:
    """The :class:`RunResult` of a run collected earlier into ``paths`` (None when nothing of it is here; see
    :func:`saved_record`)."""
    record = saved_record(paths, run_id)
    if not record:
        return None
    run_dir = paths.run_dir(run_id)
    result = RunResult(run_id=run_id, where=where, host=host, job=record.get('job', ''),
                       module=record.get('module', ''), exit_code=record.get('exit_code'),
                       run_dir=run_dir if run_dir.is_dir() else None, oom_killed=bool(record.get('oom_killed')),
                       memory_gb=record.get('memory_gb') or 0, signal=record.get('signal'),
                       variants=[Variant(v, record.get('module', '')) for v in record.get('variants', [])],
                       timed_out=bool(record.get('timed_out')), max_runtime_s=record.get('max_runtime_s') or 0,
                       stopped=record.get('stopped'), engine_restarted=str(record.get('engine_restarted') or ''))
    result.traceback = read_text(result.run_dir, protocol.TRACEBACK_FILE)
    saved_out = paths.out(run_id)
    if saved_out.exists():
        with open(saved_out, 'rb') as file:
            file.seek(max(0, saved_out.stat().st_size - 65536))
            result.output = file.read().decode('utf-8', 'replace')
    for variant in result.variants:
        if not variant.get('ok'):
            variant['traceback'] = read_text(variant.get('run_dir'), protocol.TRACEBACK_FILE)
    return result


def state_of_record(record: dict) -> str:
    if record.get('stopped'):
        return f'collected, stopped by {stopped_text(record["stopped"])}'
    if record.get('variants'):
        ok = sum(1 for v in record['variants'] if v.get('ok', v.get('state') == 'complete' and v.get('exit_code') == 0))
        return f'collected, {ok}/{len(record["variants"])} variants succeeded'
    oom = ' (OOM killed)' if record.get('oom_killed') else ''
    oom += f' (timed out after {record.get("max_runtime_s") or 0:g} s)' if record.get('timed_out') else ''
    oom += ' (return value not kept)' if record.get('result_error') else ''
    oom += ' (the engine restarted under it)' if record.get('engine_restarted') else ''
    if record.get('vanished'):
        return 'vanished before it was collected (its container was removed)'
    oom += ' (record unreadable: from its run folder)' if record.get('rebuilt') else ''
    return f'collected, exited {record.get("exit_code", "?")}{oom}'


def engine_restarted_under(state: dict, engine_started: Callable[[], Any]) -> str:
    """When the engine started again (ISO time), if it stopped under this container (its ``State``): the container
    started before the engine did, was ended by a signal (the engine stops its containers when it stops, or kills
    them when it starts again after a crash), and ended within :data:`RESTART_WINDOW_S` of the engine's start; ''
    otherwise. ``engine_started()``: :func:`tg_pipeline.hosts.engine.engine_started_at` (None when unknown), a
    request to the engine, made only for a run a signal ended."""
    started, finished = parse_time(state.get('StartedAt')), parse_time(state.get('FinishedAt'))
    code = state.get('ExitCode')
    if started is None or finished is None or not isinstance(code, int) or code <= 128:
        return ''
    engine_start = engine_started()
    if engine_start is None:
        return ''
    near = abs((engine_start - finished).total_seconds()) <= RESTART_WINDOW_S
    return engine_start.isoformat() if started < engine_start and near else ''


RESTART_WINDOW_S = 300  # the engine's shutdown (15 s by default, each container's stop timeout) and start, with room


# --- times ------------------------------------------------------------------------------------------------
def parse_time(text: str | None):
    """A Docker timestamp (nanoseconds, Z) as an aware datetime; None for the zero time."""
    if not text or text.startswith('0001-'):
        return None
    head, _, fraction = text.rstrip('Z').partition('.')
    return datetime.datetime.fromisoformat(head + ('.' + fraction[:6] if fraction else '')).replace(
        tzinfo=datetime.timezone.utc)


def parse_started(text: str | None):
    """A run's ``started`` label as an aware datetime: with its UTC offset, or (older runs) in local time."""
    try:
        moment = datetime.datetime.fromisoformat(text or '')
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.astimezone()


def shown_time(moment) -> str:
    """A time as people read it here: local, to the second."""
    return moment.astimezone().strftime('%Y-%m-%d %H:%M:%S') if moment else ''


def record_times(record: dict) -> tuple:
    """(start, end) of a collected run: the host's own times when recorded, else the ``started`` label."""
    start = parse_time(record.get('started_at')) or parse_started(record.get('started'))
    return start, parse_time(record.get('finished'))
