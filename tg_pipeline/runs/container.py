"""Step 6b: run the job's image in a Docker engine, streaming its output live.

:func:`run_container` works with any Docker client: the local engine here,
a remote one (over SSH) in :mod:`run_remote`. Environment values travel as
API JSON, never through a shell or a command line.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import pickle
import re
import struct
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker

from tg_pipeline import engine
from tg_pipeline.errors import JobFailed, PipelineError, RemoteError, tail

LABEL = 'tg_pipeline'
RUN_DIR = '/tg_pipeline/run'  # in the container: result.pkl, traceback.txt, output/ (TG_PIPELINE_OUTPUT)
OUTPUT_TAIL_BYTES = 64 * 1024


@dataclass
class RunSpec:
    """What to run: the image, its identity (labels) and limits."""
    image: str
    job: str
    package: str
    version: str
    module: str
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
            f'{LABEL}.where': where, f'{LABEL}.module': spec.module}


def spec_of(container) -> RunSpec:
    """The :class:`RunSpec` of a run, read back from its container (labels and limits)."""
    attrs = container.attrs
    label = {k[len(LABEL) + 1:]: v for k, v in (attrs['Config'].get('Labels') or {}).items()
             if k.startswith(LABEL + '.')}
    host = attrs.get('HostConfig') or {}
    return RunSpec(image=attrs['Config'].get('Image', ''), job=label.get('job', ''),
                   package=label.get('package', ''), version=label.get('version', ''),
                   module=label.get('module', ''), env_names=[], cpu=(host.get('NanoCpus') or 0) / 1e9,
                   memory_gb=(host.get('Memory') or 0) / 1024 ** 3)


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
                  out=None, err=None, environ=None, log_dir=None, detach: bool = False,
                  on_interrupt: str = 'stop') -> dict:
    """Create, attach, start, wait, collect, remove. Raise :class:`JobFailed` when the job fails.

    With ``log_dir``, the run's stdout/stderr are kept as ``log_dir/RUN_ID.out``/``.err`` and its
    result folder (return value, output folder, traceback) is copied to ``log_dir/RUN_ID/``.
    With ``detach``, the container is started and left running; its run id is returned at once.
    ``on_interrupt='detach'`` leaves the container running on Ctrl-C instead of stopping it.
    """
    out = out or sys.stdout
    run_id = new_run_id()
    name = container_name(spec, run_id)
    environment = {**spec.environment(environ), 'TG_PIPELINE_RUN_DIR': RUN_DIR, 'TG_PIPELINE_RUN_ID': run_id}
    try:
        container = client.containers.create(
            spec.image, name=name, environment=environment, labels=labels(spec, run_id, where),
            detach=True, init=True, **limits(spec.cpu, spec.memory_gb))
    except docker.errors.ImageNotFound:
        raise PipelineError(f'image {spec.image} is not on the {where} Docker engine',
                            hint='run the build (and push) tasks first, e.g. doit build_image') from None
    except docker.errors.APIError as e:
        raise PipelineError(f'cannot create the container on the {where} engine: {e.explanation or e}') from None
    except KeyboardInterrupt:  # the engine may have made it already
        _remove_named(client, name)
        raise
    try:  # one handler for Ctrl-C from here on, wherever it lands: even while the engine starts the job
        try:
            container.start()
        except Exception:
            _remove(container, stop=True)
            raise
        if detach:
            if not silent:
                print(f'Started run {run_id} ({where}), container {name}', file=out, flush=True)
                print(f'  follow it: {commands(spec.job, where, run_id)}', file=out, flush=True)
            return {'run_id': run_id, 'container': name, 'where': where}
        return watch(client, container, spec, where, run_id, silent=silent, out=out, err=err, log_dir=log_dir)
    except KeyboardInterrupt:
        interrupted(container, spec, where, run_id, on_interrupt, err or sys.stderr)
        raise


def output_stream(client, container_id: str):
    """(stdout, stderr) chunks of a container's whole output from its start, following it until it ends.

    Read from the container's log rather than an attach: every line from the first one, whenever we
    start reading (a re-attach shows the whole run), and correct over SSH, where the SDK's attach reads
    the raw channel past bytes already buffered with the response headers. The frames are read here
    from the response (the SDK's own log stream merges stdout and stderr).
    """
    api = client.api
    response = api._get(api._url('/containers/{0}/logs', container_id), stream=True,
                        params={'stdout': 1, 'stderr': 1, 'follow': 1, 'timestamps': 0, 'tail': 'all'})
    api._raise_for_status(response)
    api._disable_socket_timeout(api._get_raw_response_socket(response))  # a job may be silent for hours
    try:
        while True:
            header = response.raw.read(8)
            if len(header) < 8:
                return
            kind, length = struct.unpack('>BxxxL', header)
            data = response.raw.read(length) if length else b''
            yield (data, None) if kind == 1 else (None, data)
    finally:
        response.close()


def commands(job: str, where: str, run_id: str) -> str:
    """How a person re-attaches to / stops a run, as doit command lines."""
    kind = where.split()[0]
    return (f'doit logs job={job} where={kind} run_id={run_id} follow=1 '
            f'(stop it: doit stop job={job} where={kind} run_id={run_id})')


def watch(client, container, spec: RunSpec, where: str, run_id: str, silent: bool = False,
          out=None, err=None, log_dir=None) -> dict:
    """Stream a started container's output until it ends, then :func:`finish` it. A lost connection
    to a remote engine leaves the job running there. Ctrl-C is the caller's to handle (:func:`interrupted`)."""
    out, err = out or sys.stdout, err or sys.stderr
    output = _Tail()
    logs = (None, None)
    try:
        logs = _open_logs(log_dir, run_id)
        for chunks in output_stream(client, container.id):
            for chunk, target, log in zip(chunks, (out, err), logs):
                if chunk:
                    output.add(chunk)
                    if log:
                        log.write(chunk)
                        log.flush()
                    if not silent:
                        target.write(chunk.decode('utf-8', 'replace'))
                        target.flush()
        code = container.wait().get('StatusCode')
    except Exception as e:
        if where == 'local' or isinstance(e, PipelineError):
            raise
        raise RemoteError(f'the connection to {where} was lost during run {run_id} '
                          f'({type(e).__name__}: {e}); the job keeps running there and nothing of it is lost',
                          hint=f're-attach and see its whole output: {commands(spec.job, where, run_id)}') from None
    finally:
        for log in logs:
            if log:
                log.close()
    return finish(client, container, spec, where, run_id, code, output.text(), log_dir)


def interrupted(container, spec: RunSpec, where: str, run_id: str, on_interrupt: str, err) -> None:
    """Ctrl-C: leave a started run to itself (``on_interrupt='detach'``) or stop and remove it."""
    if on_interrupt == 'detach' and _started(container):
        print(f'\nInterrupted: run {run_id} keeps running in container {container.name} ({where})\n'
              f'  re-attach: {commands(spec.job, where, run_id)}', file=err, flush=True)
    else:
        print(f'\nInterrupted: stopping container {container.name} ({where})', file=err, flush=True)
        _remove(container, stop=True)


def _started(container) -> bool:
    try:
        container.reload()
    except Exception:  # noqa: BLE001 - engine unreachable: keep what may be running, as asked
        return True
    return container.status != 'created'


def finish(client, container, spec: RunSpec, where: str, run_id: str, code, output: str, log_dir) -> dict:
    """Collect an ended run (result folder, state as ``RUN_ID.json``), remove its container,
    return the result or raise :class:`JobFailed`."""
    state = client.api.inspect_container(container.id)['State']
    code = state.get('ExitCode') if code is None else code
    run_dir = collect(container, log_dir, run_id)
    if log_dir:
        record = {'run_id': run_id, 'job': spec.job, 'version': spec.version, 'where': where, 'exit_code': code,
                  'oom_killed': bool(state.get('OOMKilled')), 'finished': state.get('FinishedAt'),
                  'memory_gb': spec.memory_gb, 'module': spec.module}
        Path(log_dir, f'{run_id}.json').write_text(json.dumps(record, indent=1))
    _remove(container)
    result = {'run_id': run_id, 'container': container.name, 'where': where, 'exit_code': code,
              'output': output, 'run_dir': run_dir}
    if code != 0:
        raise _failure(spec, where, code, state, output, run_dir)
    result['value'] = load_result(run_dir, spec.module)
    return result


def collect(container, log_dir, run_id: str) -> str | None:
    """Copy the container's run folder (result.pkl, traceback.txt, output/) to ``log_dir/RUN_ID``."""
    if not log_dir:
        return None
    try:
        stream, _ = container.get_archive(RUN_DIR)
    except docker.errors.NotFound:
        return None  # the job died before the entry point made it
    archive = io.BytesIO(b''.join(stream))
    target = os.path.join(log_dir, run_id)
    os.makedirs(target, exist_ok=True)
    with tarfile.open(fileobj=archive) as tar:
        members = []
        for member in tar.getmembers():
            head, _, rest = member.name.partition('/')
            if not rest or not (member.isfile() or member.isdir()):
                continue
            member.name = rest
            members.append(member)
        tar.extractall(target, members=members, **({'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}))
    return target


class _ResultUnpickler(pickle.Unpickler):
    """Classes of the job package (``name__version.jobs.x``) load as the local ones (``jobs.x``)."""

    def __init__(self, file, module: str):
        super().__init__(file)
        self.prefix = module + '.'

    def find_class(self, module, name):
        if module.startswith(self.prefix):
            try:
                return super().find_class(module[len(self.prefix):], name)
            except ImportError:
                pass
        return super().find_class(module, name)


def load_result(run_dir: str | None, module: str):
    """The job's return value kept in ``run_dir``, or None."""
    path = run_dir and os.path.join(run_dir, 'result.pkl')
    if not path or not os.path.exists(path):
        return None
    import cloudpickle  # noqa: F401  (values pickled by value need it importable)
    with open(path, 'rb') as file:
        return _ResultUnpickler(file, module).load()


def _failure(spec: RunSpec, where: str, code: int, state: dict, output: str, run_dir) -> JobFailed:
    if state.get('OOMKilled'):
        return JobFailed(f'job {spec.job} was killed for exceeding its memory limit of {spec.memory_gb} GB '
                         f'({where} run)', exit_code=code, output=output,
                         hint='raise memory_gb in [run] or [jobs.%s] (or memory=... on the command line)' % spec.job)
    if code is not None and code > 128:
        return JobFailed(f'job {spec.job} was killed by signal {code - 128} ({where} run)', exit_code=code,
                         output=output)
    trace = None
    if run_dir and os.path.exists(os.path.join(run_dir, 'traceback.txt')):
        with open(os.path.join(run_dir, 'traceback.txt'), encoding='utf-8', errors='replace') as file:
            trace = file.read()
    trace = trace or _traceback(output)
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


def _open_logs(log_dir, run_id: str) -> tuple:
    if not log_dir:
        return None, None
    os.makedirs(log_dir, exist_ok=True)
    return tuple(open(os.path.join(log_dir, f'{run_id}.{kind}'), 'wb') for kind in ('out', 'err'))


def _remove_named(client, name: str) -> None:
    try:
        _remove(client.containers.get(name))
    except docker.errors.NotFound:
        pass


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
