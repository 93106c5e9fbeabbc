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
    """Run a job object, or the job pickled in a payload file; raise :class:`JobFailed` on error.

    The job's ``sys.exit`` ends the job, not this process: ``sys.exit(0)`` / ``sys.exit()`` is a success
    (no value), any other status a :class:`JobFailed` with that exit code, as in a container."""
    from tg_pipeline.runs.records import sys_exit_message
    from tg_pipeline.runtime.entry import exit_status
    job = job_or_payload
    if isinstance(job_or_payload, (str, Path)):
        job = pickle.loads(Path(job_or_payload).read_bytes())
    try:
        return run_job(job)
    except SystemExit as stop:
        code = exit_status(stop.code)  # a message goes to stderr, as Python prints it
        if code == 0:
            return None
        raise JobFailed(sys_exit_message(name, code, 'attached'), exit_code=code) from None
    except Exception as e:
        trace = traceback.format_exc()
        raise JobFailed(f'job {name} failed (attached run): {type(e).__name__}: {e}', output=trace,
                        remote_traceback=trace) from e
