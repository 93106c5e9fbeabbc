"""The run model every backend shares.

* :class:`RunSpec`: what to run: the exact image (by id), its identity (job, package, version, project,
  owner), env names, limits.
* :class:`RunHandle`: one run on one host, found by its labels: run id, where, host, container/service id.
* :class:`RunResult`: how a run ended: exit code, run folder here (return value, traceback, output/), logs.
* :class:`Backend`: start / watch / find / logs / stop / collect / discard, implemented by container runs
  (:mod:`.container`) and swarm runs (:mod:`.swarm`); :mod:`.lifecycle` is written once over it.

A run's labels (``tg_pipeline.*``) carry everything the lifecycle needs, so any process that reaches the
host can find, follow, stop and collect it; ``project`` and ``owner`` scope what a project acts on.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Protocol

from tg_pipeline.errors import PipelineError, RemoteError
from tg_pipeline.runs.resources import RunResources
from tg_pipeline.runtime import protocol

LABEL = protocol.LABEL


def new_run_id() -> str:
    """Sortable by start time (to the microsecond), unique: ``20261129-145624-123456-98ee49``; the latest run
    of a job is the one with the greatest id."""
    return datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f-') + uuid.uuid4().hex[:6]


def strip_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """``{'job': ..., 'run_id': ...}`` from a container's or service's ``tg_pipeline.*`` labels."""
    prefix = LABEL + '.'
    return {k[len(prefix):]: v for k, v in (labels or {}).items() if k.startswith(prefix)}


@dataclass(frozen=True)
class RunSpec:
    image_id: str
    job: str
    package: str
    version: str
    module: str
    env_names: tuple = ()
    cpu: float = 0
    memory_gb: float = 0
    project: str = ''
    owner: str = ''
    reference: str = ''  # the image's name where the run happens (tag or registry reference), for people
    variants: tuple = ()  # swarm: one task per variant label
    resources: RunResources = RunResources()  # GPUs, shared memory, mounts, caches, ports, env files, time limit

    def environment(self, environ=None) -> dict[str, str]:
        environ = os.environ if environ is None else environ
        return {n: environ[n] for n in self.env_names if n in environ}

    def labels(self, run_id: str, where: str) -> dict[str, str]:
        values = {'job': self.job, 'package': self.package, 'version': self.version, 'module': self.module,
                  'run_id': run_id, 'where': where, 'project': self.project, 'owner': self.owner,
                  'image': self.image_id, 'memory_gb': f'{self.memory_gb:g}',
                  'started': datetime.datetime.now().isoformat(timespec='seconds')}
        return {f'{LABEL}.{k}': v for k, v in values.items()}

    def run_environment(self, run_id: str, environ=None) -> dict[str, str]:
        return {**self.resources.environment(), **self.environment(environ), protocol.ENV_RUN_DIR: protocol.RUN_DIR,
                protocol.ENV_RUN_ID: run_id}


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    where: str  # local | remote | swarm
    host: str  # for people: 'local', 'remote user@host:22', 'swarm local'
    ref: str  # container or service id
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)  # without the tg_pipeline. prefix
    state: str = ''  # 'running', 'exited 0', '2 running, 1 complete' ...
    running: bool = False

    def __getattr__(self, key):  # job, project, owner, module, version, started ...
        if key in ('job', 'project', 'owner', 'module', 'version', 'package', 'started', 'image'):
            return self.labels.get(key, '')
        raise AttributeError(key)

    def commands(self) -> str:
        return reattach_commands(self.job, self.where, self.run_id)


@contextlib.contextmanager
def lost_connection_means_detached(remote: bool, host: str, handle: 'RunHandle', going_on: str):
    """Around watching a run on a remote host: a connection that breaks (not one of our errors) becomes a
    RemoteError saying the run goes on there and how to re-attach."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as e:
        if not remote:
            raise
        raise RemoteError(f'the connection to {host} was lost during run {handle.run_id} '
                          f'({type(e).__name__}: {e}); {going_on}',
                          hint=f're-attach and see its whole output: {handle.commands()}') from None


def reattach_commands(job: str, where: str, run_id: str) -> str:
    return (f'doit logs job={job} where={where} run_id={run_id} follow=1 '
            f'(stop it: doit stop job={job} where={where} run_id={run_id})')


@dataclass
class RunResult:
    run_id: str
    where: str
    host: str
    job: str
    module: str = ''
    exit_code: Optional[int] = None
    run_dir: Optional[Path] = None
    oom_killed: bool = False
    memory_gb: float = 0
    output: str = ''  # the last part of what it printed, for error messages
    traceback: Optional[str] = None
    signal: Optional[int] = None
    variants: list = field(default_factory=list)  # swarm: one dict per variant
    timed_out: bool = False  # stopped at its time limit (max_runtime_s)
    max_runtime_s: float = 0

    @property
    def ok(self) -> bool:
        if self.variants:
            return all(v.get('ok') for v in self.variants)
        return self.exit_code == 0

    @property
    def value(self):
        if self.variants:
            return {v['label']: v.get('value') for v in self.variants}
        return load_result(self.run_dir, self.module)


class _ResultUnpickler(pickle.Unpickler):
    """Classes of the job package (``name__version.jobs.x``) load as the local ones (``jobs.x``)."""

    def __init__(self, file, module: str):
        super().__init__(file)
        self.prefix = module + '.'

    def find_class(self, module, name):
        if self.prefix != '.' and module.startswith(self.prefix):
            try:
                return super().find_class(module[len(self.prefix):], name)
            except ImportError:
                pass
        return super().find_class(module, name)


def load_result(run_dir, module: str):
    """The job's return value kept in ``run_dir``, or None."""
    path = run_dir and Path(run_dir, protocol.RESULT_FILE)
    if not path or not path.exists():
        return None
    import cloudpickle  # noqa: F401  (values pickled by value need it importable)
    with open(path, 'rb') as file:
        return _ResultUnpickler(file, module).load()


class Backend(Protocol):
    """One kind of run on one host. ``where`` names the kind for people and for ``build/JOB/runs/WHERE``."""
    where: str
    host: str

    def start(self, spec: RunSpec) -> RunHandle: ...

    def watch(self, handle: RunHandle, sink) -> None:
        """Stream the run's output into ``sink`` (an :class:`~tg_pipeline.runs.output.OutputSink`) until it ends."""

    def find(self, job: str | None, project: str | None) -> dict[str, RunHandle]:
        """run_id -> handle of the runs on this host (of ``job`` / ``project`` when given)."""

    def logs(self, handle: RunHandle) -> tuple[bytes, bytes]: ...

    def stop(self, handle: RunHandle) -> None: ...

    def collect(self, handle: RunHandle, paths) -> RunResult:
        """An ended (or stopped) run: its files to ``paths`` (a RunPaths), its record written, the host cleaned."""

    def discard(self, handle: RunHandle) -> None:
        """Remove it from the host without collecting anything."""

    def exec(self, handle: RunHandle, command: str, out=None, err=None) -> int:
        """Run ``command`` (a shell command line) in the running run; stream its output; its exit code."""

    def forward(self, handle: RunHandle, port: int, local_port: int, out=None) -> None:
        """Forward ``local_port`` here to ``port`` of the running run, until Ctrl-C or the run's end."""
