"""Step 6a: run the job in this process (no Docker): the quickest check that it works.

The job is loaded back from its payload file, so a job that does not survive pickling fails here already, not in
the container; a job of pipeline.toml (its payload a reference record) is built here from its factory
(``build``). The output contract is a container's: the job's output folder is ``TG_PIPELINE_OUTPUT``, in a run
folder of its own (``build/JOB/runs/attached/RUN_ID/output``), and a traceback is said once, in the project's
paths, without our frames (unless TG_PIPELINE_DEBUG=1).
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

from tg_pipeline.errors import JobFailed
from tg_pipeline.runtime import protocol


def run_job(job):
    """Call ``job.run()``, or ``job()`` when it is a plain callable; return its result."""
    if hasattr(job, 'run'):
        return job.run()
    if callable(job):
        return job()
    raise TypeError(f'{type(job)} has no run() method and is not callable')


class _Output:
    """``TG_PIPELINE_OUTPUT`` (and the run folder's variable) set to ``run_dir/output`` while the job runs."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir) if run_dir else None
        self.before = {}

    def __enter__(self):
        if self.run_dir is not None:
            output = self.run_dir / protocol.OUTPUT_DIR
            output.mkdir(parents=True, exist_ok=True)
            for name, value in ((protocol.ENV_OUTPUT, str(output)), (protocol.ENV_RUN_DIR, str(self.run_dir))):
                self.before[name] = os.environ.get(name)
                os.environ[name] = value
        return self

    def __exit__(self, *exc):
        for name, value in self.before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_attached(job_or_payload, name: str = 'job', build=None, run_dir=None, project_root=None):
    """Run a job object, or the job pickled in a payload file; raise :class:`JobFailed` on error.

    ``build`` turns a payload's reference record into the job; ``run_dir``: the run folder whose ``output/`` the
    job gets as ``TG_PIPELINE_OUTPUT``; ``project_root``: its files are shown by their paths in the project.
    The job's ``sys.exit`` ends the job, not this process: ``sys.exit(0)`` / ``sys.exit()`` is a success
    (no value), any other status a :class:`JobFailed` with that exit code, as in a container."""
    from tg_pipeline.runs.records import sys_exit_message
    from tg_pipeline.runtime.entry import exit_status
    from tg_pipeline.runtime.reference import is_record
    job = job_or_payload
    if isinstance(job_or_payload, (str, Path)):
        job = pickle.loads(Path(job_or_payload).read_bytes())
    if build is not None and is_record(job):
        job = build(job)
    try:
        with _Output(run_dir):
            return run_job(job)
    except SystemExit as stop:
        code = exit_status(stop.code)  # a message goes to stderr, as Python prints it
        if code == 0:
            return None
        raise JobFailed(sys_exit_message(name, code, 'attached'), exit_code=code) from None
    except Exception as e:
        raise _failed(e, name, project_root) from e


def _failed(error: Exception, name: str, project_root) -> JobFailed:
    """The job's traceback, said once on stderr as a container's is; the error that sums it up."""
    from tg_pipeline.runtime import trace
    ours = [Path(__file__).resolve().parents[1], *_doit_dirs()]
    paths = trace.Paths([(str(Path(project_root).resolve()), '')] if project_root else [], ours)
    text = trace.format_error(error, paths)
    sys.stderr.write(text)
    sys.stderr.flush()
    at = trace.last_frame(error, paths)
    last = ''.join(__import__('traceback').format_exception_only(type(error), error)).strip().splitlines()[-1]
    failed = JobFailed(f'job {name} failed (attached run on this machine): {last}' + (f' at {at}' if at else ''),
                       exit_code=1)
    failed.remote_traceback = text
    return failed


def _doit_dirs() -> list[Path]:
    try:
        import doit
    except ImportError:
        return []
    return [Path(doit.__file__).resolve().parent]
