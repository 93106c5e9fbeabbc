"""The runs of one Docker host (local, or remote over SSH): container runs whose GPUs are handed out
(:mod:`.allocation`), and sweeps, each variant in its own container (:mod:`.sweep`).

:class:`HostBackend` is the :class:`~tg_pipeline.runs.backend.Backend` of ``where=local`` and ``where=remote``:
a :class:`~tg_pipeline.runs.container.ContainerBackend` for one run, and for a sweep's handle (the sweep as a
whole: run id, its variants' states) the same protocol over all of its containers, so that
:mod:`tg_pipeline.runs.lifecycle` (run, status, logs, stop, result, cleanup) is written once for both.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import IO

from tg_pipeline.compat.docker import docker
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.hosts.gpus import place
from tg_pipeline.paths import JobPaths, RunPaths
from tg_pipeline.runs import resources
from tg_pipeline.runs.allocation import Allocator
from tg_pipeline.runs.backend import lost_connection_means_detached
from tg_pipeline.runs.container import ContainerBackend
from tg_pipeline.runs.model import LABEL, RunHandle, RunResult, RunSpec, new_run_id, strip_labels
from tg_pipeline.runs.records import parse_time, saved_result
from tg_pipeline.runs.sweep import (POLL_S, RUNNING, Driver, Found, concurrency, docker_time, find_sweep,
                                    follow_variant, is_sweep, labels_of, marker_name, result_of_record, state_text,
                                    sweep_record, times, variant_entry, variant_paths)


class HostBackend(ContainerBackend):
    """Runs on one engine; ``config`` (optional) says where this project's runs are collected, how Ctrl-C leaves
    an attached sweep, and how to reach the host again from a process of its own (a detached sweep's keeper)."""

    def __init__(self, host, config=None, console: Console = CONSOLE, detach: bool = False):
        super().__init__(host)
        self.config, self.console, self.detach = config, console, detach
        self.allocator = Allocator(host, console)
        self.place_text = place(host)
        self.on_interrupt = config.run.on_interrupt if config is not None else 'stop'
        self._claims: dict[str, contextlib.ExitStack] = {}  # container id -> its GPUs' claim, until it started
        self._drivers: dict[str, Driver] = {}  # sweeps started by this process
        self._driver_locks: dict[str, IO[str]] = {}

    # --- one run: its GPUs handed out under the host's lock, held until it started ---------------------------
    def prepare(self, spec: RunSpec, environ=None, paths=None) -> RunHandle:
        if spec.sweep and spec.variant is None:
            return self._prepare_sweep(spec, environ)
        if not self.allocator.wanted(spec.run):
            return super().prepare(spec, environ, paths)
        claim = contextlib.ExitStack()
        chosen = claim.enter_context(self.allocator.claim(spec.run, spec.job))
        try:
            handle = super().prepare(dataclasses.replace(spec, gpu_ids=chosen), environ, paths)
        except BaseException:
            claim.close()
            raise
        self._claims[handle.ref] = claim
        return handle

    def start(self, handle: RunHandle, spec: RunSpec | None = None, environ=None) -> RunHandle:
        if is_sweep(handle):
            return self._start_sweep(handle)
        try:
            return super().start(handle, spec, environ)
        finally:
            self._release(handle.ref)

    def _release(self, ref: str) -> None:
        claim = self._claims.pop(ref, None)
        if claim is not None:
            claim.close()

    # what a sweep's driver does with one variant's container (ContainerBackend's own, for one run)
    def inner_prepare(self, spec: RunSpec, environ=None) -> RunHandle:
        return super().prepare(spec, environ)

    def inner_start(self, handle: RunHandle) -> RunHandle:
        return super().start(handle)

    def inner_watch(self, handle: RunHandle, sink) -> None:
        super().watch(handle, sink)

    def stop_one(self, handle: RunHandle) -> None:
        super().stop(handle)

    def discard_one(self, handle: RunHandle) -> None:
        super().discard(handle)

    def variant_handle(self, item: dict) -> RunHandle:
        """The handle of a variant's container, from the engine's list."""
        from tg_pipeline.runs.container import state_text as container_state
        state, running = container_state({'State': item.get('State')})
        return self._handle(item['Id'], (item.get('Names') or ['/?'])[0].lstrip('/'), item.get('Labels'), state,
                            running)

    # --- a sweep: start ------------------------------------------------------------------------------------
    def _prepare_sweep(self, spec: RunSpec, environ=None) -> RunHandle:
        """The sweep's marker container (its labels; never started), and this process as its driver."""
        run_id = new_run_id()
        gpus = self.allocator.wanted(spec.run)
        if gpus:
            self.allocator.check(spec.run, spec.job)
        info = self.client.api.info() if (spec.run.cpu or spec.run.memory_gb) and not spec.run.max_concurrent else {}
        limit = concurrency(spec, info, gpus)
        labels = {**spec.labels(run_id, self.where), **resources.labels(spec.run),
                  f'{LABEL}.variants': json.dumps(list(spec.variants)), f'{LABEL}.max_concurrent': str(limit)}
        name = marker_name(spec, run_id)
        try:
            made = self.client.api.create_container(spec.image_id, name=name, labels=labels, detach=True)
        except docker.errors.ImageNotFound:
            raise PipelineError(f'image {spec.reference or spec.image_id} is not on the {self.host} Docker engine',
                                hint='run the build (and push) tasks first, e.g. doit build_image') from None
        handle = RunHandle(run_id, self.where, self.host, made['Id'], name, strip_labels(labels), 'queued', True)
        self._drivers[run_id] = Driver(self, spec, run_id, limit, environ, self.console)
        self.hold_driver(spec.job, run_id)
        return handle

    def _start_sweep(self, handle: RunHandle) -> RunHandle:
        """The first variants started; detached, the rest left to a keeper process here."""
        if not self.detach:  # said as a swarm run says it: how many variants, how many at a time
            self.console.print(self.start_line(handle))
        self._drivers[handle.run_id].tick()
        if self.detach:
            self.hand_over(handle)
        return self.refresh(handle)

    def start_line(self, handle: RunHandle) -> str:
        if not is_sweep(handle):
            return super().start_line(handle)
        count, limit = len(labels_of(handle)), int(handle.labels.get('max_concurrent') or 0)
        at_once = 'as many at a time as the free GPUs allow' if handle.labels.get('gpus') and limit == count \
            else f'at most {limit} at a time'
        variants = f'{count} variant' + ('s' if count != 1 else '')
        return (f'Started sweep run {handle.run_id} ({self.host}): {variants}, each in its own container, '
                f'{at_once}')

    # --- a sweep: the process that starts its variants ------------------------------------------------------
    def _lock_path(self, job: str, run_id: str):
        paths = self.paths_of(job)
        if paths is None:
            return None
        folder = paths.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / '.driver.lock'

    def hold_driver(self, job: str, run_id: str, wait: bool = True) -> bool:
        """Take the sweep's driver lock here (waiting for the one that holds it when ``wait``)."""
        import fcntl
        path = self._lock_path(job, run_id)
        if path is None:
            return False
        file = open(path, 'a')
        try:
            fcntl.flock(file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            file.close()
            return False
        self._driver_locks[run_id] = file
        return True

    def let_go(self, run_id: str) -> None:
        file = self._driver_locks.pop(run_id, None)
        if file is not None:
            file.close()

    def driver_alive(self, handle: RunHandle) -> bool:
        """Whether a process here still starts the sweep's queued variants."""
        if handle.run_id in self._drivers or self.paths_of(handle.job) is None:
            return True  # ours, or another project's (its own machine knows)
        if not self.hold_driver(handle.job, handle.run_id, wait=False):
            return True
        self.let_go(handle.run_id)
        return False

    def hand_over(self, handle: RunHandle) -> None:
        """Leave the sweep's queue to a keeper process here (:mod:`.keeper`), then let go of the driver lock."""
        driver = self._drivers.pop(handle.run_id, None)
        if driver is None or self.config is None:
            return
        paths = self.paths_of(handle.job)  # (a driver here runs a job of this config: it has them)
        if paths is not None and driver.queued_left(find_sweep(self.client, handle.run_id)):
            pid, log = spawn_keeper(self.config, self.where, driver, paths)
            self.console.warn(f'  the variants still queued start from a process of its own here (pid {pid}, its '
                              f'log: {log})')
        self.let_go(handle.run_id)

    # --- a sweep: watch, state, find --------------------------------------------------------------------------
    def watch(self, handle: RunHandle, sink) -> None:
        if not is_sweep(handle):
            return super().watch(handle, sink)
        driver = self._drivers.get(handle.run_id)
        with lost_connection_means_detached(self.remote, self.host, handle,
                                            'its variants go on there (those queued need this machine)', self.lost):
            try:
                driver.drive(sink) if driver is not None else self._follow_sweep(handle, sink)
            except KeyboardInterrupt:
                if driver is not None and self.on_interrupt == 'detach':
                    self.hand_over(handle)
                raise

    def _follow_sweep(self, handle: RunHandle, sink) -> None:
        """Stream the variants' output (re-attached: the sweep's own driver starts them) until each has ended."""
        followers, lock = {}, threading.Lock()
        collected = self.collected(handle.job, handle.run_id)
        while True:
            found = find_sweep(self.client, handle.run_id)
            for index, item in found.variants.items():
                if index not in followers and item.get('State') != 'created':
                    followers[index] = follow_variant(self, index, item, sink, lock)
            running = any(item.get('State') in (*RUNNING, 'created') for item in found.variants.values())
            queued = found.marker is not None and any(i not in found.variants and i not in collected
                                                      for i in range(len(labels_of(handle))))
            if queued and not running and not self.driver_alive(handle):
                raise self.orphaned(handle)
            if not running and not queued:
                break
            time.sleep(POLL_S)
        for thread in followers.values():
            thread.join(timeout=30)

    def orphaned(self, handle: RunHandle) -> PipelineError:
        return PipelineError(f'sweep run {handle.run_id} has variants that never started, and the process that '
                             f'started its variants is gone', hint=f'end it (what ran is collected): doit stop '
                                                                     f'job={handle.job} where={self.where} '
                                                                     f'run_id={handle.run_id}; then run the sweep '
                                                                     f'again')

    def sweep_handle(self, run_id: str, found: Found) -> RunHandle:
        source = found.marker or next(iter(found.variants.values()))
        labels = {k: v for k, v in strip_labels(source.get('Labels')).items() if k not in ('variant', 'gpu_ids')}
        held = sorted({i for item in found.variants.values() if item.get('State') in RUNNING
                       for i in strip_labels(item.get('Labels')).get('gpu_ids', '').split(',') if i}, key=_number)
        if held:
            labels['gpu_ids'] = ','.join(held)
        state, running = state_text(len(json.loads(labels.get('variants') or '[]')), found,
                                    self.collected(labels.get('job', ''), run_id))
        name = (source.get('Names') or ['/?'])[0].lstrip('/') if found.marker else f'{len(found.variants)} containers'
        start = parse_time(_created(found.marker)) if found.marker else None
        return RunHandle(run_id, self.where, self.host, found.marker['Id'] if found.marker else '', name, labels,
                         state, running, start_time=start)

    def refresh(self, handle: RunHandle) -> RunHandle:
        if not is_sweep(handle):
            return super().refresh(handle)
        found = find_sweep(self.client, handle.run_id)
        if found.marker is None and not found.variants:
            return dataclasses.replace(handle, state='gone from the host', running=False)
        fresh = self.sweep_handle(handle.run_id, found)
        if not fresh.running:
            start, end = times(self.client, found)
            fresh = dataclasses.replace(fresh, start_time=start, end_time=end)
        return fresh

    def find(self, job: str | None = None, project: str | None = None) -> dict[str, RunHandle]:
        found = super().find(job, project)
        filters = [f'{LABEL}.run_id', f'{LABEL}.variants'] + ([f'{LABEL}.job={job}'] if job else []) \
            + ([f'{LABEL}.project={project}'] if project else [])
        sweeps: dict[str, Found] = {}
        marker: dict | None
        variants: dict
        for item in self.client.api.containers(all=True, filters={'label': filters}):
            labels = item.get('Labels') or {}
            run_id, index = labels.get(f'{LABEL}.run_id', ''), labels.get(f'{LABEL}.variant')
            marker, variants = sweeps.get(run_id, Found(None, {}))
            if index is None:
                marker = item
            elif index.isdigit():
                variants[int(index)] = item
            sweeps[run_id] = Found(marker, variants)
        for run_id, parts in sweeps.items():
            handle = self.sweep_handle(run_id, parts)
            found[run_id] = handle if handle.running else self.refresh(handle)
        return found

    def ended_at(self, handle: RunHandle):
        if not is_sweep(handle):
            return super().ended_at(handle)
        start, end = times(self.client, find_sweep(self.client, handle.run_id))
        return end or start

    # --- a sweep: stop, collect, discard ------------------------------------------------------------------------
    def stop(self, handle: RunHandle, timeout: int = 10) -> None:
        if not is_sweep(handle):
            return super().stop(handle, timeout)
        self.stop_sweep(handle.run_id, timeout)

    def stop_sweep(self, run_id: str, timeout: int = 10) -> None:
        """No variant starts any more (the marker goes first), and those running are stopped, all at once."""
        found = find_sweep(self.client, run_id)
        if found.marker is not None:
            self._remove(found.marker['Id'])
        running = [self.variant_handle(item) for item in find_sweep(self.client, run_id).variants.values()
                   if item.get('State') in RUNNING]
        threads = [threading.Thread(target=super(HostBackend, self).stop, args=(h, timeout), daemon=True)
                   for h in running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _remove(self, ref: str) -> None:
        try:
            self.client.api.remove_container(ref, force=True)
        except docker.errors.NotFound:
            pass

    def collect(self, handle: RunHandle, paths, logs_saved: bool = True) -> RunResult:
        if not is_sweep(handle):
            return super().collect(handle, paths, logs_saved)
        found = find_sweep(self.client, handle.run_id)
        while any(item.get('State') in RUNNING for item in found.variants.values()):
            time.sleep(POLL_S)  # stopped a moment ago (or by its driver, which found the sweep stopped)
            found = find_sweep(self.client, handle.run_id)
        start, _ = times(self.client, found)
        entries = [self._collect_variant(handle, index, label, found, paths)
                   for index, label in enumerate(labels_of(handle))]
        started, finished = collected_times(variant_paths(paths, handle.run_id), len(entries))
        record = sweep_record(handle, entries, docker_time(start) or started, finished)
        paths.write_record(handle.run_id, record)
        if found.marker is not None:
            self._remove(found.marker['Id'])
        self.let_go(handle.run_id)
        self._drivers.pop(handle.run_id, None)
        return result_of_record(record, paths, self.where, self.host)

    def _collect_variant(self, handle: RunHandle, index: int, label: str, found: Found, paths) -> dict:
        """One variant's files into ``RUN_ID/variant_N*`` (when not there yet), and its line of the record."""
        sub, name = variant_paths(paths, handle.run_id), f'variant_{index}'
        item, stopped = found.variants.get(index), found.marker is None
        result, gpu_ids = None, ''
        if sub.record(name).exists():  # collected while the others ran: its container may still be going away
            result = saved_result(sub, name, self.where, self.host)
            gpu_ids = sub.read_record(name).get('gpu_ids', '')
            stopped = stopped or bool(sub.read_record(name).get('stopped'))
        elif item is not None and item.get('State') != 'created':
            result, gpu_ids = self.collect_variant(item, sub, index, label)
        elif item is not None:
            self._remove(item['Id'])  # made, never started (the sweep was stopped in between)
        return variant_entry(index, label, result, stopped, gpu_ids)

    def collect_variant(self, item: dict, sub: RunPaths, index: int, label: str, logs_saved: bool = False):
        """An ended variant's container collected into ``sub`` as ``variant_N`` (its record saying its sweep);
        (its RunResult, its GPU ids). ``logs_saved``: its output files were written while it was followed."""
        variant = self.variant_handle(item)
        name = f'variant_{index}'
        result = super().collect(dataclasses.replace(variant, run_id=name), sub, logs_saved=logs_saved)
        record = sub.read_record(name)
        record.update(run_id=variant.run_id, variant=index, label=label)
        sub.write_record(name, record)
        return result, variant.label('gpu_ids')

    def discard(self, handle: RunHandle, stop: bool = False) -> None:
        if not is_sweep(handle):
            self._release(handle.ref)
            return super().discard(handle, stop)
        found = find_sweep(self.client, handle.run_id)
        for item in [*([found.marker] if found.marker else []), *found.variants.values()]:
            self._remove(item['Id'])
        self._drivers.pop(handle.run_id, None)
        self.let_go(handle.run_id)

    # --- a sweep: its output, and what reaches one container -----------------------------------------------------
    def log_chunks(self, handle: RunHandle, stream: int):
        """Each variant's output so far, headed ``# variant_N (LABEL)``: from its container, or collected here."""
        if not is_sweep(handle):
            yield from super().log_chunks(handle, stream)
            return
        found = find_sweep(self.client, handle.run_id)
        paths = self.paths_of(handle.job)
        for index, label in enumerate(labels_of(handle)):
            item = found.variants.get(index)
            if item is not None:
                chunks = super().log_chunks(self.variant_handle(item), stream)
            elif paths is not None:
                sub = variant_paths(paths, handle.run_id)
                chunks = _file_chunks(sub.out(f'variant_{index}') if stream == 1 else sub.err(f'variant_{index}'))
            else:
                continue
            first = True
            for chunk in chunks:
                if first:
                    yield f'# variant_{index} ({label})\n'.encode()
                    first = False
                yield chunk

    def exec(self, handle: RunHandle, command: str, console: Console = CONSOLE) -> int:
        if is_sweep(handle):
            raise one_container('exec', handle, self.where)
        return super().exec(handle, command, console)

    def forward(self, handle: RunHandle, port: int, local_port: int, console: Console = CONSOLE) -> None:
        if is_sweep(handle):
            raise one_container('forward', handle, self.where)
        super().forward(handle, port, local_port, console)

    # --- where this project's runs are collected ---------------------------------------------------------------
    def paths_of(self, job: str) -> RunPaths | None:
        """This project's runs of ``job`` on this host, here; None for a job it does not have."""
        if self.config is None or job not in self.config.jobs:
            return None
        return JobPaths.of(self.config, job).runs(self.where)

    def collected(self, job: str, run_id: str) -> set:
        """The variants of a sweep collected here already."""
        paths = self.paths_of(job)
        if paths is None:
            return set()
        sub = variant_paths(paths, run_id)
        if not sub.dir.is_dir():
            return set()
        return {int(p.stem.split('_')[1]) for p in sub.dir.glob('variant_*.json') if p.stem.split('_')[1].isdigit()}


def collected_times(sub: RunPaths, count: int) -> tuple:
    """(the first start, the last end) of a sweep's variants as their records say (engine times)."""
    records = [sub.read_record(f'variant_{i}') for i in range(count)]
    starts = [r['started_at'] for r in records if r.get('started_at') and not r['started_at'].startswith('0001')]
    ends = [r['finished'] for r in records if r.get('finished') and not r['finished'].startswith('0001')]
    return (min(starts, key=parse_time) if starts else None), (max(ends, key=parse_time) if ends else None)


def _number(text: str):
    return (0, int(text)) if text.isdigit() else (1, text)


def _created(item: dict | None) -> str | None:
    """A listed container's creation time (seconds since the epoch) as the engine writes times."""
    import datetime
    if not item or not item.get('Created'):
        return None
    return datetime.datetime.fromtimestamp(item['Created'], datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _file_chunks(path):
    if path.exists():
        with open(path, 'rb') as file:
            yield from iter(lambda: file.read(1 << 20), b'')


def one_container(what: str, handle: RunHandle, where: str) -> PipelineError:
    return PipelineError(f'doit {what} reaches one container, and run {handle.run_id} is a sweep of '
                         f'{len(labels_of(handle))} variants, each in its own container',
                         hint=f'name the variant: doit {what} job={handle.job} where={where} run_id={handle.run_id} '
                              f'variant=0 ...')


def spawn_keeper(config, where: str, driver: Driver, paths: RunPaths) -> tuple[int, Path]:
    """Start the keeper of a detached sweep (:mod:`.keeper`), a process of its own that outlives this one; (its
    pid, its log file). What it needs goes through its standard input, never a file (the spec holds env values)."""
    import subprocess
    import sys
    import cloudpickle
    log = paths.run_dir(driver.run_id) / 'keeper.log'
    log.parent.mkdir(parents=True, exist_ok=True)
    payload = cloudpickle.dumps({'config': config, 'where': where, 'spec': driver.spec, 'run_id': driver.run_id,
                                 'limit': driver.limit, 'verbose': driver.console.verbose})
    with open(log, 'ab') as out:
        process = subprocess.Popen([sys.executable, '-m', 'tg_pipeline.runs.keeper'], stdin=subprocess.PIPE,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    assert process.stdin is not None  # stdin=PIPE
    process.stdin.write(payload)
    process.stdin.close()
    return process.pid, log
