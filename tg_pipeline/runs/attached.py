"""Step 6a: run the job in this process (no Docker): the quickest check that it works.

The job is loaded back from its payload file, so a job that does not survive
pickling fails here already, not in the container.
"""
from __future__ import annotations

import pickle
import traceback
from pathlib import Path

from tg_pipeline.errors import JobFailed


def run_job(job):
    """Call ``job.run()``, or ``job()`` when it is a plain callable; return its result."""
    if hasattr(job, 'run'):
        return job.run()
    if callable(job):
        return job()
    raise TypeError(f'{type(job)} has no run() method and is not callable')


def run_attached(job_or_payload, name: str = 'job'):
    """Run a job object, or the job pickled in a payload file; raise :class:`JobFailed` on error."""
    job = job_or_payload
    if isinstance(job_or_payload, (str, Path)):
        job = pickle.loads(Path(job_or_payload).read_bytes())
    try:
        return run_job(job)
    except Exception as e:
        trace = traceback.format_exc()
        raise JobFailed(f'job {name} failed (attached run): {type(e).__name__}: {e}', output=trace,
                        remote_traceback=trace) from e
