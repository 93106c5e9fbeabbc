"""The run model every backend shares.

* :class:`RunSpec`: what to run: the exact image (by id), its identity (job, package, version, project,
  owner), the job's run settings (env names, limits, GPUs, mounts ...) and the values of its env files.
* :class:`RunHandle`: one run on one host, found by its labels: run id, where, host, container/service id.
* :class:`RunResult`: how a run ended: exit code, run folder here (return value, traceback, output/), logs.
* :class:`Backend`: start / watch / find / log_chunks / stop / collect / discard, implemented by container runs
  (:mod:`.container`) and swarm runs (:mod:`.swarm`); :mod:`.lifecycle` is written once over it.

A run's labels (``tg_pipeline.*``) carry everything the lifecycle needs, so any process that reaches the
host can find, follow, stop and collect it; ``project`` and ``owner`` scope what a project acts on.
"""
from __future__ import annotations

import datetime
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from tg_pipeline.config.schema import RunSettings
from tg_pipeline.runs import resources
from tg_pipeline.runtime import protocol
from tg_pipeline.runs.results import load_result

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
    project: str = ''
    owner: str = ''
    reference: str = ''  # the image's name where the run happens (tag or registry reference), for people
    variants: tuple = ()  # swarm: one task per variant label
    run: RunSettings = RunSettings()  # the job's run settings: env names, limits, GPUs, mounts, caches, ports ...
    env_file_values: tuple = ()  # (name, value) read from its env files, here, when the run step began
    gpu_ids: tuple = ()  # the GPUs (indexes) handed to this run on its host (see runs.allocation)
    variant: Optional[int] = None  # a sweep's variant on one host, by its index (the entry point picks it by slot)
    run_id: str = ''  # given: the sweep's run id, which each of its variants carries
    sweep: bool = False  # the image holds variants (resource ``variants``): one host runs each in its own container

    def environment(self, environ=None) -> dict[str, str]:
        environ = os.environ if environ is None else environ
        debug = {'TG_PIPELINE_DEBUG': environ['TG_PIPELINE_DEBUG']} if environ.get('TG_PIPELINE_DEBUG') else {}
        return {**debug, **{n: environ[n] for n in self.run.env if n in environ}}  # debug: our frames shown there

    def labels(self, run_id: str, where: str) -> dict[str, str]:
        values = {'job': self.job, 'package': self.package, 'version': self.version, 'module': self.module,
                  'run_id': run_id, 'where': where, 'project': self.project, 'owner': self.owner,
                  'image': self.image_id, 'memory_gb': f'{self.run.memory_gb:g}',
                  'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds')}
        if self.gpu_ids:
            values['gpu_ids'] = ','.join(self.gpu_ids)
        if self.variant is not None:  # with the labels of the sweep's variants (its containers are found by them)
            values.update(variant=str(self.variant), variants=json.dumps(list(self.variants)))
        return {f'{LABEL}.{k}': v for k, v in values.items()}

    def run_environment(self, run_id: str, environ=None) -> dict[str, str]:
        from tg_pipeline.runs import secrets
        slot = {} if self.variant is None else {protocol.ENV_SLOT: str(self.variant)}
        return {**dict(self.env_file_values), **resources.environment(self.run), **self.environment(environ),
                protocol.ENV_RUN_DIR: protocol.RUN_DIR, protocol.ENV_RUN_ID: run_id,
                **slot, **secrets.environment(self.run.secret_env)}  # secret_env: the names only


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
    start_time: Optional[datetime.datetime] = None  # as the host tells it (None: see the 'started' label)
    end_time: Optional[datetime.datetime] = None  # when it ended, as the host tells it (None: still running)

    def label(self, key: str) -> str:
        return self.labels.get(key, '')

    job = property(lambda self: self.label('job'))
    project = property(lambda self: self.label('project'))
    owner = property(lambda self: self.label('owner'))
    module = property(lambda self: self.label('module'))
    version = property(lambda self: self.label('version'))
    started = property(lambda self: self.label('started'))
    image = property(lambda self: self.label('image'))

    def commands(self) -> str:
        return reattach_commands(self.job, self.where, self.run_id)


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
    provenance: dict = field(default_factory=dict)  # what ran: the run's record (tg_pipeline.provenance.record)
    stopped: Optional[dict] = None  # stopped by `doit stop`: {"by": owner, "at": ISO time}
    engine_restarted: str = ''  # when the engine started again, after it stopped under the run (ISO time), or ''

    @property
    def ok(self) -> bool:
        if self.variants:
            return all(v.get('ok') for v in self.variants)
        return self.exit_code == 0

    @property
    def value(self):
        """The job's return value; :class:`~tg_pipeline.errors.ResultNotLoadable` when it needs a module this
        Python lacks (the value stays in result.pkl)."""
        if self.variants:
            return {v['label']: v['value'] if v.get('ok') else None for v in self.variants}
        return load_result(self.run_dir, self.module)


class Variant(dict):
    """One swarm variant's outcome (variant, label, state, exit_code, ok, run_dir, ...); its return value,
    ``['value']``, is loaded from its run folder when asked for, not kept."""

    def __init__(self, entry: Mapping, module: str = ''):
        super().__init__(entry)
        self.module = module

    def __missing__(self, key):
        if key == 'value' and self.get('ok'):
            return load_result(self.get('run_dir'), self.module)
        raise KeyError(key)


