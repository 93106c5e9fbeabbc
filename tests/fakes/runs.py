"""Helpers shared by the run tests over the fake engine: a RunSpec for an image a test programmed (by
its id, as the build records it), the container backend on the fake engine, and a run whose output is kept."""
from __future__ import annotations

import io

from tg_pipeline.console import Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.hosts.host import Host
from tg_pipeline.runs.model import RunSpec
from tg_pipeline.runs.container import ContainerBackend
from tg_pipeline.runs.lifecycle import run_container

IMAGE = 'tgtest-greeter:0.0.1'
MISSING_ID = 'sha256:' + '0' * 64  # an image id no engine has
TRACE = 'Traceback (most recent call last):\n  File "job.py", line 3, in run\nRuntimeError: boom from the fake\n'


def make_spec(engine, image: str = IMAGE, **changes) -> RunSpec:
    """The spec of job Greeter run from the id of ``image`` (programmed on ``engine`` already)."""
    values = dict(image_id=engine.image(image).id if image else MISSING_ID, job='Greeter', package='greeter',
                  version='0.0.1', module='greeter__0_0_1', project='proj-a', owner='alice')
    return RunSpec(**{**values, **changes})


def local_backend(client, where: str = 'local') -> ContainerBackend:
    return ContainerBackend(Host(where.split()[0], where, client, remote=where != 'local'))


def run(client, spec: RunSpec, paths=None, quiet: bool = False, **kwargs):
    """run_container with its output kept: (result, handle or exception; stdout text; stderr text)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        result = run_container(client, spec, paths=paths, console=Console(quiet, out=out, err=err), **kwargs)
    except PipelineError as e:
        result = e
    return result, out.getvalue(), err.getvalue()
