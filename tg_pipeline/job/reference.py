"""Step 1 for a job of pipeline.toml (``factory`` + TOML arguments): its payload is its reference, not the job.

The payload is a plain record (factory, args, kwargs; per sweep variant its kwargs: see
:mod:`tg_pipeline.runtime.reference`), so a code edit packages without importing the job's modules here: the
cost of ``import torch`` at a module's top is paid in the container, where the job runs, not at every edit.

What building the job here checked is checked where it is cheap:

* here, in this process, only when the record changes (a new or changed ``[jobs.NAME]``: factory, args, kwargs,
  sweep): the job is built once as before (:func:`tg_pipeline.job.factory.make_job`: the factory resolves, takes
  the arguments, returns a job) and pickled to see that it would travel, then the record is written;
* in the import check's clean subprocess (:mod:`tg_pipeline.job.checks`), whenever its key changes: the factory's
  module imports with the declared dependencies only;
* in the container, before the job starts: anything a code edit broke since (a renamed class, a changed
  signature) is one ERROR/TIP paragraph with pipeline.toml's key and the project's paths.

Jobs from the Python API or a notebook are objects, not references: they stay pickled by value (cloudpickle).
"""
from __future__ import annotations

import pickle
from pathlib import Path

from tg_pipeline.config.schema import _plain
from tg_pipeline.runtime.reference import make_record

PROTOCOL = 4


def records(config, job: str) -> dict[str, object]:
    """resource name -> the object it pickles: ``job`` (the first variant's record for a sweep) and, for a
    sweep, ``variants`` ([(label, record), ...])."""
    j = config.job(job)
    where = dict(config=Path(config.path).name, line=j.factory_line)

    def record(kwargs) -> dict:
        return make_record(job, j.factory, _plain(j.args), _plain(kwargs), **where)
    if j.sweep:
        variants = [(label, record(kwargs)) for label, kwargs in j.variants()]
        return {'job': variants[0][1], 'variants': variants}
    return {'job': record(j.kwargs)}


def payloads(config, job: str) -> dict[str, bytes]:
    """resource name -> its bytes (plain pickles: their loading imports nothing)."""
    return {name: pickle.dumps(value, protocol=PROTOCOL) for name, value in records(config, job).items()}


def validate(config, job: str) -> None:
    """Build the job (every variant) here once, as a pickled job would be, and see that it pickles: the same
    refusals as before, each one ERROR/TIP paragraph."""
    from tg_pipeline.job.factory import make_job
    from tg_pipeline.job.pickling import check_modules, dumps
    j = config.job(job)
    where = (config.root, str(config.path), f'jobs.{job}.factory', j.factory_line)
    for _, kwargs in (j.variants() if j.sweep else [('job', j.kwargs)]):
        built = make_job(j.factory, list(j.args), dict(kwargs), *where)
        check_modules(dumps(built)[1], config.source_roots)


def write(config, job: str, path_of) -> bool:
    """Write the job's reference payloads (``path_of(name)``: where); validate first unless every file already
    holds these bytes (then only the code changed since it was validated). Whether it validated."""
    from tg_pipeline.paths import write_if_changed
    data = payloads(config, job)
    same = all(path_of(name).is_file() and path_of(name).read_bytes() == value for name, value in data.items())
    if not same:
        validate(config, job)
    for name, value in data.items():
        write_if_changed(path_of(name), value)
    return not same


def is_reference(data: bytes) -> bool:
    """Whether a payload's bytes are a reference record (or a list of them), not a pickled job."""
    return b'tg_pipeline_job' in data and b'cloudpickle' not in data
