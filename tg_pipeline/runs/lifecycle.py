"""Step 7: a run's life after it started: status, logs (follow = re-attach), stop, result, cleanup.

The state lives on the Docker host, as labels of the run's container (job,
version, run id, start time; see :func:`run_local.labels`), so any machine
with the config can ask: there is no server. Runs that ended and were
collected (attached runs, or detached ones after ``result``/``stop``/``logs
follow=1``) are kept in ``build/JOB/runs/WHERE/``: ``RUN_ID.out``/``.err``
(output), ``RUN_ID.json`` (exit code, OOM) and ``RUN_ID/`` (return value,
output folder, traceback). Run ids sort by start time: the newest is the
latest run.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

from tg_pipeline.errors import JobFailed, PipelineError
from tg_pipeline.runs.container import LABEL, _failure, commands, finish, interrupted, load_result, spec_of, watch


def containers(client, job: str | None = None) -> dict:
    """run_id -> container of tg_pipeline runs on that engine (of ``job`` when given), running or not."""
    label = f'{LABEL}.job={job}' if job else f'{LABEL}.run_id'
    found = client.containers.list(all=True, filters={'label': label})
    # swarm tasks' containers carry the run labels too: they belong to their service (run_swarm)
    return {c.labels.get(f'{LABEL}.run_id', ''): c for c in found
            if c.labels.get(f'{LABEL}.run_id') and 'com.docker.swarm.task.id' not in c.labels}


def saved_runs(log_dir) -> dict:
    """run_id -> (stdout path, stderr path) of the runs whose output was saved here."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return {}
    return {p.stem: (p, p.with_suffix('.err')) for p in log_dir.glob('*.out')}


def saved_record(log_dir, run_id: str) -> dict:
    try:
        return json.loads(Path(log_dir, f'{run_id}.json').read_text())
    except (OSError, ValueError):
        return {}


def _pick(on_host: dict, saved: dict, job: str, where: str, run_id: str | None, running_only=False) -> str:
    """The run asked for, or the job's latest one; a clear error when there is none."""
    ids = sorted(r for r, c in on_host.items() if not running_only or c.status == 'running')
    if not running_only:
        ids = sorted({*ids, *saved})
    if run_id:
        if run_id in ids:
            return run_id
        known = ', '.join(ids[-5:]) or 'none'
        raise PipelineError(f'no {"running " if running_only else ""}run {run_id} of job {job} on {where}',
                            hint=f'known runs (latest last): {known}; see them all with: '
                                 f'doit status job={job} where={where.split()[0]}')
    if not ids:
        kind = where.split()[0]
        raise PipelineError(f'job {job} has no {"running " if running_only else ""}run on {where}',
                            hint=f'start one: doit run_{kind} job={job}' + (' detach=1' if running_only else ''))
    return ids[-1]


def state_text(container) -> str:
    state = container.attrs.get('State', {})
    if container.status == 'running':
        return 'running'
    text = f'exited {state.get("ExitCode")}'
    return text + ' (OOM killed)' if state.get('OOMKilled') else text


def status(client, job: str, log_dir, where: str, run_id: str | None = None, out=None) -> list[dict]:
    """Print (and return) the job's runs: on the host, and those collected here."""
    out = out or sys.stdout
    on_host, saved = containers(client, job), saved_runs(log_dir)
    ids = [_pick(on_host, saved, job, where, run_id)] if run_id else sorted({*on_host, *saved})
    rows = []
    for rid in ids:
        if rid in on_host:
            c = on_host[rid]
            rows.append({'run_id': rid, 'state': state_text(c), 'version': c.labels.get(f'{LABEL}.version', ''),
                         'started': c.labels.get(f'{LABEL}.started', ''), 'container': c.name})
        else:
            record = saved_record(log_dir, rid)
            code = record.get('exit_code', '?')
            oom = ' (OOM killed)' if record.get('oom_killed') else ''
            rows.append({'run_id': rid, 'state': f'collected, exited {code}{oom}',
                         'version': record.get('version', ''), 'started': '', 'container': str(Path(log_dir, rid))})
    print(f'# job {job} on {where}: {len(rows)} run(s)', file=out)
    for row in rows:
        print(f'{row["run_id"]}  {row["state"]:<28} {row["version"]:<10} {row["started"]:<19}  {row["container"]}',
              file=out)
    out.flush()
    return rows


def save_logs(container, log_dir, run_id: str) -> tuple[bytes, bytes]:
    stdout, stderr = container.logs(stdout=True, stderr=False), container.logs(stdout=False, stderr=True)
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        Path(log_dir, f'{run_id}.out').write_bytes(stdout)
        Path(log_dir, f'{run_id}.err').write_bytes(stderr)
    return stdout, stderr


def get_logs(client, job: str, log_dir, run_id: str | None = None) -> tuple[str, str, bytes, bytes]:
    """(run_id, source, stdout, stderr) of ``run_id`` or of the newest run; run_id '' when there is none."""
    on_host, saved = containers(client, job), saved_runs(log_dir)
    ids = sorted({*on_host, *saved})
    run_id = run_id or (ids[-1] if ids else '')
    if run_id in on_host:
        c = on_host[run_id]
        return (run_id, f'container {c.name} ({c.status})', c.logs(stdout=True, stderr=False),
                c.logs(stdout=False, stderr=True))
    if run_id in saved:
        out, err = saved[run_id]
        return run_id, f'saved in {out.parent}', out.read_bytes(), err.read_bytes() if err.exists() else b''
    return '', '', b'', b''


def print_logs(client, job: str, log_dir, where: str, run_id: str | None = None, follow: bool = False,
               out=None) -> dict:
    """Print a run's whole output. With ``follow``, a running run is re-attached: its output streams
    until it ends, then it is collected like an attached run (result back, container removed)."""
    out = out or sys.stdout
    on_host = containers(client, job)
    found = _pick(on_host, saved_runs(log_dir), job, where, run_id)
    if follow and found in on_host:
        container = on_host[found]
        spec = spec_of(container)
        print(f'# job {job}, run {found}, {where}: container {container.name} ({container.status}), following',
              file=out, flush=True)
        if container.status == 'running':
            try:
                return watch(client, container, spec, where, found, out=out, log_dir=log_dir)
            except KeyboardInterrupt:  # as in an attached run: Ctrl-C stops it
                interrupted(container, spec, where, found, 'stop', sys.stderr)
                raise
        stdout, stderr = save_logs(container, log_dir, found)
        _write(out, stdout, stderr)
        return finish(client, container, spec, where, found, None, (stdout + stderr).decode('utf-8', 'replace'),
                      log_dir)
    _, source, stdout, stderr = get_logs(client, job, log_dir, found)
    print(f'# job {job}, run {found}, {where}: {source}', file=out, flush=True)
    _write(out, stdout, stderr)
    return {'run_id': found}


def _write(out, stdout: bytes, stderr: bytes) -> None:
    out.write(stdout.decode('utf-8', 'replace'))
    if stderr:
        print('# stderr', file=out)
        out.write(stderr.decode('utf-8', 'replace'))
    out.flush()


def stop(client, job: str, log_dir, where: str, run_id: str | None = None, timeout: int = 10, out=None) -> dict:
    """Stop a running run (the given one or the job's latest running one), then collect and remove it."""
    out = out or sys.stdout
    on_host = containers(client, job)
    found = _pick(on_host, {}, job, where, run_id, running_only=True)
    container = on_host[found]
    container.stop(timeout=timeout)
    container.reload()
    stdout, stderr = save_logs(container, log_dir, found)
    try:
        result = finish(client, container, spec_of(container), where, found, None,
                        (stdout + stderr).decode('utf-8', 'replace'), log_dir)
    except JobFailed as e:
        result = {'run_id': found, 'exit_code': e.exit_code}
    print(f'Stopped run {found} of job {job} on {where} (exit code {result["exit_code"]}); '
          f'its output and results are in {log_dir}', file=out, flush=True)
    return result


def result(client, job: str, log_dir, where: str, run_id: str | None = None) -> dict:
    """The result of an ended run (the given one or the latest): its return value, or JobFailed with
    its traceback. A run still going raises an error saying how to follow it."""
    on_host = containers(client, job)
    found = _pick(on_host, saved_runs(log_dir), job, where, run_id)
    if found in on_host:
        container = on_host[found]
        if container.status == 'running':
            raise PipelineError(f'run {found} of job {job} is still running on {where}',
                                hint=f'wait for it and get its result: {commands(job, where, found)}')
        stdout, stderr = save_logs(container, log_dir, found)
        return finish(client, container, spec_of(container), where, found, None,
                      (stdout + stderr).decode('utf-8', 'replace'), log_dir)
    record = saved_record(log_dir, found)
    run_dir = Path(log_dir, found)
    run_dir = str(run_dir) if run_dir.is_dir() else None
    code = record.get('exit_code')
    if code is None:
        raise PipelineError(f'run {found} of job {job} left no exit code in {log_dir}',
                            hint='its container was removed before it was collected; see its output with '
                                 f'doit logs job={job} where={where.split()[0]} run_id={found}')
    if code != 0:
        spec = _Recorded(job, record.get('memory_gb') or 0)
        saved_out = Path(log_dir, f'{found}.out')
        output = saved_out.read_text(errors='replace') if saved_out.exists() else ''
        raise _failure(spec, where, code, {'OOMKilled': record.get('oom_killed')}, output, run_dir)
    return {'run_id': found, 'exit_code': 0, 'run_dir': run_dir,
            'value': load_result(run_dir, record.get('module', ''))}


class _Recorded:
    """The two fields of a RunSpec that a failure message needs, from a run's saved record."""

    def __init__(self, job: str, memory_gb: float):
        self.job, self.memory_gb = job, memory_gb


def cleanup(client, days: float, log_dir_of, where: str, out=None) -> list[str]:
    """Remove ended runs older than ``days`` from the host, after collecting their output and results
    (into ``log_dir_of(job)``, when it gives a folder). Running containers are never touched."""
    out = out or sys.stdout
    limit = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    removed = []
    for run_id, container in sorted(containers(client).items()):
        if container.status == 'running':
            continue
        finished = _parse_time(container.attrs.get('State', {}).get('FinishedAt'))
        if finished and finished > limit:
            continue
        spec = spec_of(container)
        log_dir = log_dir_of(spec.job)
        stdout, stderr = save_logs(container, log_dir, run_id)
        try:
            finish(client, container, spec, where, run_id, None, (stdout + stderr).decode('utf-8', 'replace'),
                   log_dir)
        except JobFailed:
            pass  # its failure is recorded with it; cleanup only clears the host
        removed.append(run_id)
        print(f'removed run {run_id} of job {spec.job} ({container.name})', file=out, flush=True)
    print(f'{len(removed)} ended run(s) older than {days:g} day(s) removed from {where}', file=out, flush=True)
    return removed


def _parse_time(text: str | None):
    if not text or text.startswith('0001-'):
        return None
    text = text.rstrip('Z')
    head, _, fraction = text.partition('.')
    return datetime.datetime.fromisoformat(head + ('.' + fraction[:6] if fraction else '')).replace(
        tzinfo=datetime.timezone.utc)
