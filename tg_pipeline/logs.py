"""The output of a job's last run: from its container on the host (found by labels), or the saved logs.

Attached runs remove their container when they end, after saving its stdout
and stderr as ``build/JOB/runs/WHERE/RUN_ID.out`` / ``.err``; detached runs
keep their container. Run ids sort by start time, so the newest of both is
the last run.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import PipelineError
from .run_local import LABEL


def containers(client, job: str) -> dict:
    """run_id -> container, for the job's containers on that engine (running or not)."""
    found = client.containers.list(all=True, filters={'label': f'{LABEL}.job={job}'})
    return {c.labels.get(f'{LABEL}.run_id', ''): c for c in found}


def saved_runs(log_dir: Path) -> dict:
    """run_id -> (stdout path, stderr path) of the runs whose output was saved here."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return {}
    return {p.stem: (p, p.with_suffix('.err')) for p in log_dir.glob('*.out')}


def get_logs(client, job: str, log_dir: Path, run_id: str | None = None) -> tuple[str, str, bytes, bytes]:
    """(run_id, source, stdout, stderr) of ``run_id`` or of the newest run; run_id '' when there is none."""
    on_host = containers(client, job)
    saved = saved_runs(log_dir)
    ids = sorted({*on_host, *saved} - {''})
    if run_id is None:
        run_id = ids[-1] if ids else ''
    if run_id in on_host:
        c = on_host[run_id]
        return (run_id, f'container {c.name} ({c.status})', c.logs(stdout=True, stderr=False),
                c.logs(stdout=False, stderr=True))
    if run_id in saved:
        out, err = saved[run_id]
        return run_id, f'saved in {out.parent}', out.read_bytes(), err.read_bytes() if err.exists() else b''
    return '', '', b'', b''


def print_logs(client, job: str, log_dir: Path, where: str, run_id: str | None = None, out=None) -> str:
    out = out or sys.stdout
    found, source, stdout, stderr = get_logs(client, job, log_dir, run_id)
    if not found:
        wanted = f'run {run_id}' if run_id else 'any run'
        raise PipelineError(f'no {where} logs of {wanted} of job {job}',
                            hint=f'run it first (doit run_{where.split()[0]} job={job})')
    print(f'# job {job}, run {found}, {where}: {source}', file=out, flush=True)
    out.write(stdout.decode('utf-8', 'replace'))
    if stderr:
        print('# stderr', file=out)
        out.write(stderr.decode('utf-8', 'replace'))
    out.flush()
    return found
