"""Step 6b: run the job's image in a Docker engine, streaming its output live.

:func:`run_container` works with any Docker client: the local engine here,
a remote one (over SSH) in :mod:`run_remote`. Environment values travel as
API JSON, never through a shell or a command line.
"""
from __future__ import annotations

import datetime
import os
import re
import sys
import uuid
from dataclasses import dataclass

import docker

from . import engine
from .errors import JobFailed, PipelineError, tail

LABEL = 'tg_pipeline'
OUTPUT_TAIL_BYTES = 64 * 1024


@dataclass
class RunSpec:
    """What to run: the image, its identity (labels) and limits."""
    image: str
    job: str
    package: str
    version: str
    env_names: list
    cpu: float = 0
    memory_gb: float = 0

    def environment(self, environ=None) -> dict[str, str]:
        environ = os.environ if environ is None else environ
        return {n: environ[n] for n in self.env_names if n in environ}


def new_run_id() -> str:
    return datetime.datetime.now().strftime('%Y%m%d-%H%M%S-') + uuid.uuid4().hex[:6]


def labels(spec: RunSpec, run_id: str, where: str) -> dict[str, str]:
    return {f'{LABEL}.job': spec.job, f'{LABEL}.package': spec.package, f'{LABEL}.version': spec.version,
            f'{LABEL}.run_id': run_id, f'{LABEL}.started': datetime.datetime.now().isoformat(timespec='seconds'),
            f'{LABEL}.where': where}


def container_name(spec: RunSpec, run_id: str) -> str:
    return re.sub(r'[^a-zA-Z0-9_.-]', '-', f'tg-{spec.package}-{spec.version}-{run_id}')


def limits(cpu: float, memory_gb: float) -> dict:
    kwargs = {}
    if cpu:
        kwargs['nano_cpus'] = int(cpu * 1e9)
    if memory_gb:
        kwargs['mem_limit'] = int(memory_gb * 1024 ** 3)
        kwargs['memswap_limit'] = kwargs['mem_limit']  # no swap: the limit is the limit
    return kwargs


class _Tail:
    """Keeps the last bytes of a stream for error messages."""

    def __init__(self):
        self.data = bytearray()

    def add(self, chunk: bytes):
        self.data += chunk
        del self.data[:-OUTPUT_TAIL_BYTES]

    def text(self) -> str:
        return self.data.decode('utf-8', 'replace')


def run_container(client: docker.DockerClient, spec: RunSpec, where: str = 'local', silent: bool = False,
                  out=None, err=None, environ=None, log_dir=None) -> dict:
    """Create, attach, start, wait, remove. Raise :class:`JobFailed` when the job fails.

    With ``log_dir``, the whole output is also kept as ``log_dir/RUN_ID.log``.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    run_id = new_run_id()
    name = container_name(spec, run_id)
    try:
        container = client.containers.create(
            spec.image, name=name, environment=spec.environment(environ), labels=labels(spec, run_id, where),
            detach=True, **limits(spec.cpu, spec.memory_gb))
    except docker.errors.ImageNotFound:
        raise PipelineError(f'image {spec.image} is not on the {where} Docker engine',
                            hint='run the build (and push) tasks first, e.g. doit build_image') from None
    except docker.errors.APIError as e:
        raise PipelineError(f'cannot create the container on the {where} engine: {e.explanation or e}') from None
    output = _Tail()
    log = _open_log(log_dir, run_id)
    try:
        # attach before start, with logs=True: not a line is lost
        stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        container.start()
        for stdout, stderr in stream:
            for chunk, target in ((stdout, out), (stderr, err)):
                if chunk:
                    output.add(chunk)
                    if log:
                        log.write(chunk)
                        log.flush()
                    if not silent:
                        target.write(chunk.decode('utf-8', 'replace'))
                        target.flush()
        status = container.wait()
        state = client.api.inspect_container(container.id)['State']
    except KeyboardInterrupt:
        print(f'\nInterrupted: stopping container {name}', file=err, flush=True)
        _remove(container, stop=True)
        raise
    finally:
        if log:
            log.close()
    _remove(container)
    code = status.get('StatusCode', state.get('ExitCode'))
    result = {'run_id': run_id, 'container': name, 'exit_code': code, 'output': output.text()}
    if code != 0:
        raise _failure(spec, where, code, state, output.text())
    return result


def _failure(spec: RunSpec, where: str, code: int, state: dict, output: str) -> JobFailed:
    if state.get('OOMKilled'):
        return JobFailed(f'job {spec.job} was killed for exceeding its memory limit of {spec.memory_gb} GB '
                         f'({where} run)', exit_code=code, output=output,
                         hint='raise memory_gb in [run] or [jobs.%s] (or memory=... on the command line)' % spec.job)
    if code is not None and code > 128:
        return JobFailed(f'job {spec.job} was killed by signal {code - 128} ({where} run)', exit_code=code,
                         output=output)
    trace = _traceback(output)
    # the output was streamed already: the error repeats only the job's traceback, when there is one
    return JobFailed(f'job {spec.job} failed ({where} run)', exit_code=code, output=trace or output,
                     remote_traceback=trace)


def _traceback(output: str) -> str | None:
    start = output.rfind('Traceback (most recent call last):')
    if start < 0:
        return None
    lines = output[start:].splitlines()
    end = next((i for i, l in enumerate(lines) if 'DONE. Exiting Training Grounds.' in l), len(lines))
    return '\n'.join(lines[:end])


def _open_log(log_dir, run_id: str):
    if not log_dir:
        return None
    os.makedirs(log_dir, exist_ok=True)
    return open(os.path.join(log_dir, f'{run_id}.log'), 'wb')


def _remove(container, stop: bool = False) -> None:
    try:
        if stop:
            container.stop(timeout=5)
        container.remove(force=True)
    except docker.errors.NotFound:
        pass


def run_local(spec: RunSpec, silent: bool = False, client=None, **kwargs) -> dict:
    return run_container(client or engine.local(), spec, where='local', silent=silent, **kwargs)


__all__ = ['RunSpec', 'run_container', 'run_local', 'tail']
