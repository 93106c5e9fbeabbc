"""The output of a job's last run: from its container on the host (found by labels), or the saved log.

Attached runs remove their container when they end, after saving the whole
output under ``build/JOB/runs/WHERE/RUN_ID.log``; detached runs keep theirs.
Run ids sort by start time, so the newest of both is the last run.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .run_local import LABEL


def containers(client, job: str) -> dict:
    """run_id -> container, for the job's containers on that engine (running or not)."""
    found = client.containers.list(all=True, filters={'label': f'{LABEL}.job={job}'})
    return {c.labels.get(f'{LABEL}.run_id', ''): c for c in found}


def last_run_logs(client, job: str, log_dir: Path, run_id: str | None = None) -> tuple[str, str, bytes]:
    """(run_id, source, output) of ``run_id`` or of the newest run; run_id '' when there is none."""
    on_host = containers(client, job)
    saved = {p.stem: p for p in Path(log_dir).glob('*.log')} if Path(log_dir).is_dir() else {}
    ids = sorted({*on_host, *saved} - {''})
    if run_id is None:
        run_id = ids[-1] if ids else ''
    if run_id in on_host:
        container = on_host[run_id]
        return run_id, f'container {container.name} ({container.status})', container.logs(stdout=True, stderr=True)
    if run_id in saved:
        return run_id, f'saved log {saved[run_id]}', saved[run_id].read_bytes()
    return '', '', b''


def print_logs(client, job: str, log_dir: Path, where: str, run_id: str | None = None, out=None) -> str:
    out = out or sys.stdout
    found, source, data = last_run_logs(client, job, log_dir, run_id)
    if not found:
        from .errors import PipelineError
        wanted = f'run {run_id}' if run_id else 'any run'
        raise PipelineError(f'no {where} logs of {wanted} of job {job}',
                            hint=f'run it first (doit run_{where.split()[0]} job={job})')
    print(f'# job {job}, run {found}, {where}: {source}', file=out, flush=True)
    out.write(data.decode('utf-8', 'replace'))
    out.flush()
    return found
