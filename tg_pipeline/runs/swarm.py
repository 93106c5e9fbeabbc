"""Swarm runs: the job image as one replicated-job service on Docker Swarm, one task per variant.

All variants of a sweep ship in ONE image (resource ``variants``); each task picks its variant by its task
slot (``TG_PIPELINE_SLOT={{.Task.Slot}}``, filled in by the engine). Swarm places the tasks within the
reservations and constraints, at most ``max_concurrent`` ([run]) at a time. The service is created from the image's
registry digest, so every node runs exactly the image this build produced.

Results travel back through the service's log, which the manager serves for tasks on any node: the entry
point prints its run folder as marker lines (:mod:`tg_pipeline.runtime.protocol`), collected here into
``build/JOB/runs/swarm/RUN_ID/variant_N/``.
"""
from __future__ import annotations

import datetime
import json
import re
import tarfile
import tempfile
import threading
import time
from typing import Any, NoReturn
from pathlib import Path


from tg_pipeline.compat.docker import docker
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import SwarmError
from tg_pipeline.runs.model import LABEL, RunHandle, RunResult, RunSpec, Variant, new_run_id, strip_labels
from tg_pipeline.runs.backend import lost_connection_means_detached
from tg_pipeline.config.schema import RunSettings
from tg_pipeline.runs.resources import _bind_and_cache_mounts
from tg_pipeline.runs.records import exit_status, parse_time, time_limit_hit
from tg_pipeline.runs.secrets import remove_swarm_secrets, swarm_secrets, values as secret_values
from tg_pipeline.runs.service_logs import MARKER, Lines, ServiceLog, split_frame, tail
from tg_pipeline.runtime import protocol
from tg_pipeline.hosts.host import not_a_manager
from tg_pipeline.config.values import parse_gpus

TERMINAL = {'complete', 'failed', 'rejected', 'shutdown', 'orphaned', 'remove'}
UNSCHEDULABLE = ('no suitable node', 'insufficient resources')
HOLDING = {'assigned', 'accepted', 'preparing', 'ready', 'starting', 'running'}  # a node's resources are taken


def service_name(spec: RunSpec, run_id: str) -> str:
    """A DNS label (what swarm accepts): letters, digits and '-', at most 63, ending with the run id."""
    head = re.sub(r'[^a-z0-9-]+', '-', f'tg-{spec.package}-{spec.version}'.lower())[:63 - len(run_id) - 1]
    return f'{head.strip("-")}-{run_id}'


def _slot(task: dict) -> int:
    return task.get('Slot', 0)  # replicated-job slots count from 0, and the API omits a zero


def chosen_tasks(tasks: list[dict]) -> dict[int, dict]:
    """slot -> the task that stands for its variant: one that completed, else its first ended one, else
    the latest. (The engine may start a failed slot again; its first failure decides.)"""
    def rank(task):
        state = task['Status']['State']
        return 2 if state == 'complete' else 1 if state in TERMINAL else 0
    chosen: dict[int, dict] = {}
    for task in sorted(tasks, key=lambda t: t['CreatedAt']):
        current = chosen.get(_slot(task))
        if current is None or rank(task) > rank(current) or rank(task) == rank(current) == 0:
            chosen[_slot(task)] = task
    return chosen


def unschedulable(tasks: list[dict]) -> dict | None:
    """A pending task that no node accepts, while no task of this run holds a node: then nothing of ours
    will make room. (Tasks waiting for the GPUs or reservations their own siblings hold are queued, not stuck.)"""
    if any(t['Status']['State'] in HOLDING for t in tasks):
        return None
    return next((t for t in tasks if t['Status']['State'] == 'pending'
                 and any(m in (t['Status'].get('Err') or '') for m in UNSCHEDULABLE)), None)


def task_times(tasks: dict) -> tuple:
    """(when the first task was made, when the last one changed state) by the manager's clock."""
    made = [parse_time(t.get('CreatedAt')) for t in tasks.values()]
    changed = [parse_time(t.get('Status', {}).get('Timestamp')) for t in tasks.values()]
    return min([t for t in made if t], default=None), max([t for t in changed if t], default=None)


def docker_time(moment) -> str | None:
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ') if moment else None


def check_capacity(client, options, host: str) -> None:
    """Fail at once when this engine is no swarm manager, or no ready node can hold one task's reservation."""
    try:
        nodes = client.nodes.list()
    except docker.errors.APIError as e:
        raise not_a_manager(host, e) from None
    ready = [n.attrs['Description']['Resources'] for n in nodes if n.attrs.get('Status', {}).get('State') == 'ready'
             and n.attrs.get('Spec', {}).get('Availability') == 'active']
    cpu, memory = int(options.cpu_reservation * 1e9), int(options.memory_reservation_gb * 1024 ** 3)
    if not any(r.get('NanoCPUs', 0) >= cpu and r.get('MemoryBytes', 0) >= memory for r in ready):
        biggest = max(((r.get('NanoCPUs', 0) / 1e9, r.get('MemoryBytes', 0) / 1024 ** 3) for r in ready),
                      default=(0, 0))
        raise SwarmError(
            f'the tasks cannot be scheduled: each reserves {options.cpu_reservation:g} CPU and '
            f'{options.memory_reservation_gb:g} GB, and no ready node of the swarm has that much '
            f'({len(ready)} ready, the largest has {biggest[0]:g} CPU and {biggest[1]:.1f} GB)',
            hint='lower cpu_reservation / memory_reservation_gb in [swarm] (reserve_cpu=, reserve_memory= on the '
                 'command line), or add a bigger node to the swarm')


class SwarmBackend:
    """Runs on a swarm manager; ``host`` is a :class:`~tg_pipeline.hosts.host.Host` (``options``: [swarm])."""
    kind, noun, streams_to_files, announce_attached, where = 'swarm service', 'swarm run', False, True, 'swarm'
    stop_takes_output = True  # a replicated-job service stops only by being removed, with its log

    def __init__(self, host, options=None):
        from tg_pipeline.config.schema import SwarmSettings
        self.client, self.host, self.remote, self.nodes = host.docker, host.name, host.remote, host.nodes
        self.lost = getattr(host, 'lost_reason', lambda: None)
        self.options = options or SwarmSettings()

    # --- start --------------------------------------------------------------------------------------
    def prepare(self, spec: RunSpec, environ=None, paths=None) -> RunHandle:
        check_capacity(self.client, self.options, self.host)
        check_swarm(self.client.api.nodes(), spec.run, self.options.gpu_resource, self.host)
        run_id = new_run_id()
        labels = {**spec.labels(run_id, self.where), f'{LABEL}.variants': json.dumps(list(spec.variants)),
                  f'{LABEL}.max_concurrent': str(spec.run.max_concurrent)}
        return RunHandle(run_id, self.where, self.host, '', service_name(spec, run_id), strip_labels(labels),
                         'created', False)

    def start(self, handle: RunHandle, spec: RunSpec, environ=None) -> RunHandle:
        """Create the service: its tasks start as the swarm places them."""
        count, o = len(spec.variants), self.options
        labels = {**{str(k): str(v) for k, v in o.labels.items()},
                  **{f'{LABEL}.{k}': v for k, v in handle.labels.items()}}
        env = {**spec.run_environment(handle.run_id, environ), protocol.ENV_SEND_BACK: '1',
               protocol.ENV_SLOT: '{{.Task.Slot}}'}
        mounts, generic = swarm_options(spec.run, spec.project, o.gpu_resource)
        secret_refs = self._secrets(handle, spec, environ, labels, env)
        reserved = docker.types.Resources(cpu_limit=int(spec.run.cpu * 1e9) or None,
                                          mem_limit=int(spec.run.memory_gb * 1024 ** 3) or None,
                                          cpu_reservation=int(o.cpu_reservation * 1e9) or None,
                                          mem_reservation=int(o.memory_reservation_gb * 1024 ** 3) or None,
                                          generic_resources=generic)
        try:
            service = self.client.services.create(
                spec.reference, name=handle.name, env=[f'{k}={v}' for k, v in env.items()], labels=labels,
                container_labels=labels, init=True, resources=reserved, mounts=mounts or None,
                mode=docker.types.ServiceMode('replicated-job', replicas=count,
                                              concurrency=spec.run.max_concurrent or count),
                restart_policy=docker.types.RestartPolicy(condition='none'), constraints=list(o.constraints),
                secrets=secret_refs or None)
        except docker.errors.APIError as e:
            remove_swarm_secrets(self.client, handle.run_id)
            raise SwarmError(f'the swarm on {self.host} refused the service: {e.explanation or e}',
                             hint='check [swarm] constraints and that the manager can reach the registry') from None
        return RunHandle(handle.run_id, self.where, self.host, service.id, handle.name, handle.labels,
                         'pending', True)

    def _secrets(self, handle: RunHandle, spec: RunSpec, environ, labels: dict, env: dict) -> list:
        """secret_env as Docker secrets of this run (see :mod:`tg_pipeline.runs.secrets`); ``env`` learns where."""
        if not spec.run.secret_env:
            return []
        import os
        found = secret_values(spec.run.secret_env, os.environ if environ is None else environ)
        env[protocol.ENV_SECRETS_DIR] = protocol.SWARM_SECRETS_DIR
        return swarm_secrets(self.client, handle.run_id, found, {k: v for k, v in labels.items()
                                                                  if k.startswith(f'{LABEL}.')})

    def start_line(self, handle: RunHandle) -> str:
        count = len(self.variant_labels(handle))
        return (f'Started swarm run {handle.run_id} ({self.host}): {count} task(s), '
                f'at most {int(handle.labels.get("max_concurrent") or 0) or count} at a time')

    # --- watch --------------------------------------------------------------------------------------
    def watch(self, handle: RunHandle, sink) -> None:
        """Wait for every task to end, streaming the log (each line prefixed with its variant)."""
        slots: dict[str, int] = {}
        stop = threading.Event()
        threading.Thread(target=self._follow, args=(handle.ref, slots, sink, stop), daemon=True).start()
        try:
            with lost_connection_means_detached(self.remote, f'the swarm manager ({self.host})', handle,
                                                'the tasks go on there', self.lost):
                self._wait(handle, slots)
        finally:
            stop.set()

    def _wait(self, handle: RunHandle, slots: dict) -> None:
        count, pending_since = len(self.variant_labels(handle)), None
        while True:
            tasks = self.client.api.tasks(filters={'service': handle.ref})
            slots.update({t['ID']: _slot(t) for t in tasks})
            stuck = unschedulable(tasks)
            pending_since = (pending_since or time.time()) if stuck else None
            timeout = self.options.schedule_timeout
            if stuck and pending_since is not None and time.time() - pending_since > timeout:
                self.discard(handle)
                raise SwarmError(f'the tasks of run {handle.run_id} cannot be scheduled on {self.host}: '
                                 f'{stuck["Status"]["Err"]} (waited {timeout:g} s); the service was removed',
                                 hint='lower the reservations or limits, relax [swarm] constraints, or add nodes')
            if len([t for t in chosen_tasks(tasks).values() if t['Status']['State'] in TERMINAL]) >= count:
                return
            time.sleep(0.5)

    def _follow(self, service_id: str, slots: dict, sink, stop: threading.Event) -> None:
        lines: dict = {}
        try:
            for frame in self.client.api.service_logs(service_id, stdout=True, stderr=True, follow=True,
                                                      details=True):
                if stop.is_set():
                    return
                task, data = split_frame(frame)
                for line, starts in lines.setdefault(task, Lines()).feed(data):
                    if not (starts and line.startswith(MARKER)):
                        sink.write(1, (f'[variant {slots.get(task, "?")}] '.encode() if starts else b'') + line)
        except Exception:  # the service was removed (the stream ends with it), or the connection went
            return

    # --- find ---------------------------------------------------------------------------------------
    def find(self, job: str | None = None, project: str | None = None) -> dict[str, RunHandle]:
        filters = [f'{LABEL}.run_id'] + ([f'{LABEL}.job={job}'] if job else []) \
            + ([f'{LABEL}.project={project}'] if project else [])
        found = {}
        for service in self.client.api.services(filters={'label': filters}):
            labels = strip_labels(service['Spec'].get('Labels'))
            handle = RunHandle(labels.get('run_id', ''), self.where, self.host, service['ID'],
                               service['Spec'].get('Name', ''), labels)
            found[handle.run_id] = self.refresh(handle)
        return found

    def refresh(self, handle: RunHandle) -> RunHandle:
        if not handle.ref:
            return handle
        tasks = self._tasks(handle)
        states = [t['Status']['State'] for t in tasks.values()]
        counts = {s: states.count(s) for s in sorted(set(states))}
        text = ', '.join(f'{n} {s}' for s, n in counts.items()) or 'no task yet'
        running = len(states) < len(self.variant_labels(handle)) or not set(states) <= TERMINAL
        start, end = task_times(tasks)
        return RunHandle(handle.run_id, self.where, self.host, handle.ref, handle.name, handle.labels, text, running,
                         start_time=start, end_time=None if running else end)

    def _tasks(self, handle: RunHandle) -> dict[int, dict]:
        return chosen_tasks(self.client.api.tasks(filters={'service': handle.ref}))

    @staticmethod
    def variant_labels(handle: RunHandle) -> list[str]:
        return json.loads(handle.labels.get('variants') or '["0"]')

    def ended_at(self, handle: RunHandle):
        return task_times(self._tasks(handle))[1]

    # --- logs, stop, collect, discard -----------------------------------------------------------------
    def log_chunks(self, handle: RunHandle, stream: int):
        """Every variant's log so far (stdout and stderr: the service log mixes them), headed by its name."""
        if stream != 1:
            return
        with tempfile.TemporaryDirectory() as folder:
            found = self.read_logs(handle, self._tasks(handle), Path(folder), wait=0)
            for slot in found.slots:
                yield f'# variant_{slot}\n'.encode()
                with open(found.log_path(slot), 'rb') as file:
                    yield from iter(lambda: file.read(1 << 20), b'')

    def stop(self, handle: RunHandle) -> None:
        """Nothing to do before :meth:`collect`: removing the service (there) stops its tasks."""

    def collect(self, handle: RunHandle, paths, logs_saved: bool = True) -> RunResult:
        """Every task's log and run folder to ``paths``, the record written, the service removed."""
        tasks = self._tasks(handle)
        run_root = paths.run_dir(handle.run_id)
        found = self.read_logs(handle, tasks, run_root)
        archives = found.archives()
        variants = [Variant(self._variant(index, label, tasks.get(index, {}), found.log_path(index),
                                          archives.get(index), run_root), handle.module)
                    for index, label in enumerate(self.variant_labels(handle))]
        for archive in archives.values():
            archive.unlink()
        start, end = task_times(tasks)
        paths.write_record(handle.run_id, {
            'run_id': handle.run_id, 'job': handle.job, 'where': self.where, 'module': handle.module,
            'version': handle.version, 'project': handle.project, 'owner': handle.owner, 'started': handle.started,
            'started_at': docker_time(start), 'finished': docker_time(end),
            'variants': [{k: v for k, v in r.items() if k != 'traceback'} for r in variants]})
        self.discard(handle, settle=3 if not all(v['ok'] for v in variants) else 0)
        return RunResult(run_id=handle.run_id, where=self.where, host=self.host, job=handle.job,
                         module=handle.module, run_dir=run_root, variants=variants)

    @staticmethod
    def _variant(index, label, task, log: Path, archive: Path | None, run_root) -> dict:
        status = task.get('Status', {})
        run_dir = run_root / f'variant_{index}'
        run_dir.mkdir(parents=True, exist_ok=True)
        if not log.exists():
            log.write_bytes(b'')
        if archive is not None:
            safe: dict[str, Any] = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
            with tarfile.open(archive) as tar:
                tar.extractall(run_dir, **safe)
        code, _ = exit_status(status.get('ContainerStatus', {}).get('ExitCode'), run_dir)
        entry = {'variant': index, 'label': label, 'state': status.get('State', 'missing'), 'exit_code': code,
                 'error': status.get('Err', ''), 'node': task.get('NodeID', ''), 'run_dir': str(run_dir)}
        entry['ok'] = entry['state'] == 'complete' and code == 0
        limit = time_limit_hit(run_dir)
        entry['timed_out'], entry['max_runtime_s'] = limit is not None, limit or 0
        if not entry['ok']:
            trace = run_dir / protocol.TRACEBACK_FILE
            entry['traceback'] = trace.read_text(errors='replace') if trace.exists() else tail(log)
        return entry

    def read_logs(self, handle: RunHandle, tasks: dict, folder: Path, wait: float = 15) -> ServiceLog:
        """Each variant's log (``folder/variant_N.out``) and run folder archive, from the service's log.
        The manager gathers logs from the nodes; a run folder is complete when all of its parts arrived,
        so this re-reads (up to ``wait`` seconds) until every task that ran its entry point sent one."""
        slot_of = {t['ID']: slot for slot, t in tasks.items()}
        expected = {s for s, t in tasks.items() if t['Status'].get('ContainerStatus', {}).get('ExitCode') is not None
                    and t['Status'].get('ContainerStatus', {}).get('ExitCode') < 128}
        deadline = time.time() + wait
        while True:
            found = ServiceLog(folder, slot_of)
            found.read(self.client.api.service_logs(handle.ref, stdout=True, stderr=True, details=True,
                                                    follow=False))
            if expected <= set(found.archives()) or time.time() > deadline:
                return found
            time.sleep(0.5)

    def exec(self, handle: RunHandle, command: str, console: Console = CONSOLE) -> int:
        self.refuse_reach('exec', handle.job, handle.run_id)

    def forward(self, handle: RunHandle, port: int, local_port: int, console: Console = CONSOLE) -> None:
        self.refuse_reach('forward', handle.job, handle.run_id)

    @staticmethod
    def refuse_reach(what: str, job: str, run_id: str = '') -> NoReturn:
        """exec and forward reach one container: a swarm run has none to offer (said before looking for runs)."""
        raise SwarmError(f'doit {what} reaches one container, and a swarm run{" " + run_id if run_id else ""} is a '
                         f'service whose tasks run on any node of the swarm: {what} is not supported for swarm runs',
                         hint=f'see its output with doit logs job={job} where=swarm; to {what} into a job, run it '
                              f'with run_local or run_remote (detach=1), then doit {what} job={job} where=remote')

    def discard(self, handle: RunHandle, settle: float = 0) -> None:
        """Remove the service, then its task containers on every engine we reach.

        Docker 20.10 leaves the tasks of a removed replicated-job service, and their exited containers,
        behind (moby/moby#44312, fixed in Docker 24); removing the containers keeps the hosts clean.
        With ``settle``, keep sweeping that long: the engine may start a failed slot again just as the
        service goes, and that container appears a moment later."""
        if not handle.ref:
            return
        try:
            self.client.api.remove_service(handle.ref)
        except docker.errors.NotFound:
            pass
        remove_swarm_secrets(self.client, handle.run_id)
        deadline = time.time() + settle
        while True:
            for engine in [self.client, *self.nodes]:
                for item in engine.api.containers(all=True, filters={
                        'label': f'com.docker.swarm.service.id={handle.ref}'}):
                    try:
                        engine.api.remove_container(item['Id'], force=True)
                    except docker.errors.NotFound:
                        pass
            if time.time() >= deadline:
                return
            time.sleep(0.5)


# --- swarm ---------------------------------------------------------------------------------------------
def check_swarm(nodes: list, res: RunSettings, gpu_resource: str, host: str) -> None:
    """Refuse at once what a swarm service cannot have, and a GPU count no ready node advertises."""
    from tg_pipeline.errors import SwarmError
    for key, given in (('ipc', res.ipc), ('ports', res.ports)):
        if given:
            raise SwarmError(f'{key} = {given!r} has no form on Docker Swarm (a service has no IPC mode and its '
                             f'tasks share no host ports)', hint=f'run it without: {key}="" on the command line, '
                                                                  f'or use run_remote for this job')
    gpus = parse_gpus(res.gpus)
    if gpus.device_ids or gpus.count < 0:
        raise SwarmError(f'gpus = "{res.gpus}": a swarm task reserves a number of GPUs, not "all" or device ids',
                         hint='give a count: gpus=1')
    if not gpus.count:
        return
    ready = [n['Description'].get('Resources', {}) for n in nodes if n.get('Status', {}).get('State') == 'ready'
             and n.get('Spec', {}).get('Availability') == 'active']
    most = max((gpu_count(r, gpu_resource) for r in ready), default=0)
    if most < gpus.count:
        raise SwarmError(
            f'the tasks cannot be scheduled: each reserves {gpus.count} GPU(s) (generic resource "{gpu_resource}"), '
            f'and no ready node of the swarm on {host} advertises that many ({len(ready)} ready, the most: {most})',
            hint=f'advertise the GPUs of each GPU node in its /etc/docker/daemon.json, e.g. '
                 f'"node-generic-resources": ["{gpu_resource}={gpus.count}"], and restart its dockerd; '
                 f'or lower gpus (gpus=0 runs without)')


def gpu_count(node_resources: dict, kind: str) -> int:
    """How many of generic resource ``kind`` a node advertises (discrete counts and named ids)."""
    count = 0
    for item in node_resources.get('GenericResources') or []:
        discrete, named = item.get('DiscreteResourceSpec') or {}, item.get('NamedResourceSpec') or {}
        count += int(discrete.get('Value', 0)) if discrete.get('Kind') == kind else 0
        count += 1 if named.get('Kind') == kind else 0
    return count


def swarm_options(res: RunSettings, project: str, gpu_resource: str) -> tuple[list, dict | None]:
    """(mounts, generic resources to reserve) of a swarm service."""
    from docker.types import Mount
    mounts = _bind_and_cache_mounts(res, project)
    if res.shm_gb:
        mounts.append(Mount('/dev/shm', None, type='tmpfs', tmpfs_size=int(res.shm_gb * 1024 ** 3)))
    count = parse_gpus(res.gpus).count
    return mounts, ({gpu_resource: count} if count > 0 else None)
