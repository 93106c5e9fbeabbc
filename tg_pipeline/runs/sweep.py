"""Sweeps on one host (run_local, run_remote): every variant its own container, run folder and record, at most
``max_concurrent`` at a time, each with its own GPUs.

The image carries every variant (resource ``variants``); a variant's container gets its index as
``TG_PIPELINE_SLOT``, as a swarm task does, and the entry point picks that variant. Everything of a sweep is on
its host, labelled with the sweep's run id, so any process that reaches the host finds it:

* a *marker* container, ``tg-PACKAGE-VERSION-RUN_ID-sweep``, created and never started: the sweep's labels
  (its variants, how many at a time). While it is there, the sweep's queue goes on; ``stop`` removes it first
  (then no variant starts any more), and collecting the whole sweep removes it last.
* a container per started variant, ``tg-PACKAGE-VERSION-RUN_ID-vN``, labelled with its variant and the GPUs it
  was given.

A :class:`Driver` starts the queued variants as places free up: the attached run step (which also streams
their output, each line headed ``[variant N]``), or, once detached (``detach=1``, Ctrl-C with ``on_interrupt =
"detach"``), a process of its own here (:mod:`.keeper`), which ends when every variant has started. The one
that drives holds the sweep's driver lock (``RUN_ID/.driver.lock`` here). Collecting (at the end of an attached
run, or by ``result``, ``stop``, ``logs follow=1``, ``cleanup``) copies each variant's files into
``build/JOB/runs/WHERE/RUN_ID/variant_N/`` (``variant_N.out``, ``.err``, ``.json`` beside it) and writes the
sweep's record ``RUN_ID.json``, whose variants make the table of results, as for a swarm run.
"""
from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from typing import NamedTuple

from tg_pipeline.compat.docker import docker
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs.model import LABEL, RunHandle, RunResult, RunSpec, Variant, strip_labels
from tg_pipeline.runs.records import parse_time

POLL_S = 1.0  # a driver looks at its sweep this often
RUNNING = ('running', 'paused', 'restarting')
STOPPED_CODES = (137, 143)  # SIGKILL, SIGTERM through the init process


class Found(NamedTuple):
    """A sweep's containers on its host, as the engine lists them."""
    marker: dict | None
    variants: dict  # index -> list item


def find_sweep(client, run_id: str) -> Found:
    marker, variants = None, {}
    for item in client.api.containers(all=True, filters={'label': [f'{LABEL}.run_id={run_id}', f'{LABEL}.variants']}):
        index = (item.get('Labels') or {}).get(f'{LABEL}.variant')
        if index is None:
            marker = item
        elif index.isdigit():
            variants[int(index)] = item
    return Found(marker, variants)


def exit_code(item: dict) -> int | None:
    """The exit code of an ended container, from the engine's list (``Exited (1) 3 seconds ago``)."""
    found = re.match(r'Exited \((-?\d+)\)', item.get('Status') or '')
    return int(found.group(1)) if found else None


def labels_of(handle_or_item) -> list[str]:
    """The sweep's variant labels."""
    labels = handle_or_item.labels if isinstance(handle_or_item, RunHandle) else \
        strip_labels(handle_or_item.get('Labels'))
    return json.loads(labels.get('variants') or '[]')


def is_sweep(handle: RunHandle) -> bool:
    """A sweep on one host (not one of its variants, not a swarm run)."""
    return bool(handle.labels.get('variants')) and 'variant' not in handle.labels and handle.where != 'swarm'


def marker_name(spec: RunSpec, run_id: str) -> str:
    return re.sub(r'[^a-zA-Z0-9_.-]', '-', f'tg-{spec.package}-{spec.version}-{run_id}-sweep')


def concurrency(spec: RunSpec, info: dict, gpus_handed_out: bool) -> int:
    """How many variants run at once: ``max_concurrent``; else as many as the GPUs allow (each variant waits for
    its own), else as ``cpu`` and ``memory_gb`` allow on this host (all of them when neither is set)."""
    count, run = len(spec.variants), spec.run
    if run.max_concurrent:
        return min(count, run.max_concurrent)
    if gpus_handed_out:
        return count
    limits = [count]
    if run.cpu:
        limits.append(max(1, int((info.get('NCPU') or 1) // run.cpu)))
    if run.memory_gb:
        limits.append(max(1, int((info.get('MemTotal') or 0) / 1024 ** 3 // run.memory_gb)))
    return min(limits)


class VariantSink:
    """One variant's output into the sweep's sink, each line headed ``[variant N] `` (whole lines only, so
    that variants running at once do not cut into each other's lines); with ``paths`` (the sweep's variants'
    RunPaths), also byte for byte into ``variant_N.out`` / ``.err`` there, as a lone run's are."""

    def __init__(self, sink, index: int, lock: threading.Lock, paths: RunPaths | None = None):
        self.sink, self.prefix, self.lock = sink, f'[variant {index}] '.encode(), lock
        self.partial = {1: b'', 2: b''}
        self.files = {}
        if paths is not None:
            paths.dir.mkdir(parents=True, exist_ok=True)
            self.files = {1: open(paths.out(f'variant_{index}'), 'wb'), 2: open(paths.err(f'variant_{index}'), 'wb')}

    def write(self, stream: int, data: bytes) -> None:
        if self.files:
            self.files[stream].write(data)
            self.files[stream].flush()
        text = self.partial[stream] + data
        lines = text.split(b'\n')
        self.partial[stream] = lines.pop()
        if lines:
            with self.lock:
                self.sink.write(stream, b''.join(self.prefix + line + b'\n' for line in lines))

    def close(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                with self.lock:
                    self.sink.write(stream, self.prefix + rest + b'\n')
        self.partial = {1: b'', 2: b''}
        for file in self.files.values():
            file.close()
        self.files = {}


class Driver:
    """Starts the variants of one sweep on its host, at most ``limit`` at a time, each with its GPUs
    (``backend``: a :class:`~tg_pipeline.runs.hosted.HostBackend`)."""

    def __init__(self, backend, spec: RunSpec, run_id: str, limit: int, environ=None, console: Console = CONSOLE):
        self.backend, self.spec, self.run_id, self.limit = backend, spec, run_id, limit
        self.environ, self.console = environ, console
        self.waiting_said: str | None = None
        self.failed_fast = False
        self.ended_codes: dict[int, int | None] = {}  # variants collected while the sweep ran: their exit codes

    @property
    def count(self) -> int:
        return len(self.spec.variants)

    def tick(self) -> Found:
        """Start what may start now; the sweep as it is then."""
        found = find_sweep(self.backend.client, self.run_id)
        if found.marker is None:
            return found  # stopped (or collected): nothing more starts
        codes = {**self.ended_codes, **{i: exit_code(item) for i, item in found.variants.items()
                                        if item.get('State') == 'exited'}}
        if self.spec.run.fail_fast and any(code not in (0, None) for code in codes.values()):
            self.fail_fast(codes)
            return find_sweep(self.backend.client, self.run_id)
        running = [i for i, item in found.variants.items() if item.get('State') in (*RUNNING, 'created')]
        queued = [i for i in range(self.count) if i not in found.variants and i not in self.backend.collected(
            self.spec.job, self.run_id)]
        for index in queued[:max(0, self.limit - len(running))]:
            if not self.start(index):
                break
        return find_sweep(self.backend.client, self.run_id)

    def fail_fast(self, codes: dict) -> None:
        failed = sorted(i for i, code in codes.items() if code not in (0, None))
        self.console.warn(f'Variant {failed[0]} of sweep run {self.run_id} failed (exit code {codes[failed[0]]}) '
                          f'and fail_fast is on: stopping the others')
        self.failed_fast = True
        self.backend.stop_sweep(self.run_id)

    def start(self, index: int) -> bool:
        """Start variant ``index`` (False: its GPUs are taken, it waits)."""
        spec = dataclasses.replace(self.spec, variant=index, run_id=self.run_id)
        allocator = self.backend.allocator
        if not allocator.wanted(spec.run):
            self._start(spec)
            return True
        with allocator.attempt(spec.run, spec.job) as chosen:
            if chosen is not None:
                self._start(dataclasses.replace(spec, gpu_ids=chosen))
                return True
        theirs = [h for holders in allocator.by_gpu.values() for h in holders if h.labels.get('run_id') != self.run_id]
        if not spec.run.gpu_wait and theirs:
            self.backend.stop_sweep(self.run_id)
            raise allocator.taken(spec.run, f'{spec.job} (variant {index} of sweep run {self.run_id})')
        if allocator.busy != self.waiting_said:
            self.console.print(f'Waiting for GPUs: variant {index} of sweep run {self.run_id} (job {spec.job}) asks '
                               f'for gpus = "{spec.run.gpus}" on {self.backend.place_text}, and {allocator.busy}')
            self.waiting_said = allocator.busy
        return False

    def _start(self, spec: RunSpec) -> None:
        """Create and start the variant's container; when the sweep was stopped meanwhile, stop it again."""
        handle = self.backend.inner_prepare(spec, self.environ)
        try:
            self.backend.inner_start(handle)
        except Exception:
            self.backend.discard_one(handle)
            raise
        if find_sweep(self.backend.client, self.run_id).marker is None:
            self.backend.stop_one(handle)

    def queued_left(self, found: Found) -> bool:
        """Whether some variant has not started yet while the sweep goes on."""
        collected = self.backend.collected(self.spec.job, self.run_id)
        return found.marker is not None and any(i not in found.variants and i not in collected
                                                for i in range(self.count))

    def drive(self, sink) -> None:
        """Start the variants as places free up, until each has ended, streaming their output into ``sink``
        (and their files here); each ended variant is collected meanwhile (a thread of its own), and the next
        one starts as soon as one ends."""
        followers: dict[int, threading.Thread] = {}
        lock, ended = threading.Lock(), threading.Event()
        paths = self.backend.paths_of(self.spec.job)
        sub = variant_paths(paths, self.run_id) if paths is not None else None
        collector = Collector(self, sub)
        try:
            while True:
                ended.clear()
                found = self.tick()
                for index, item in found.variants.items():
                    if index not in followers and item.get('State') != 'created':
                        followers[index] = follow_variant(self.backend, index, item, sink, lock, sub, ended)
                    elif item.get('State') == 'exited' and index in followers and not followers[index].is_alive():
                        collector.add(index, item)
                busy = any(item.get('State') in (*RUNNING, 'created') for item in found.variants.values())
                if not busy and not self.queued_left(found):
                    break
                ended.wait(POLL_S)
        except BaseException:  # Ctrl-C, a lost host: the followers (daemons) are left, what was queued is collected
            collector.close()
            raise
        for thread in followers.values():  # every variant has ended: their streams end too
            thread.join(timeout=30)
        for index, item in found.variants.items():
            if item.get('State') == 'exited':
                collector.add(index, item)
        collector.close()

    def keep_starting(self) -> None:
        """Start the variants as places free up until each has started (or the sweep was stopped): what the
        keeper process does for a detached sweep."""
        while True:
            found = self.tick()
            if not self.queued_left(found):
                return
            time.sleep(POLL_S)


class Collector:
    """Collects the sweep's ended variants one by one, in a thread of its own, while the others run: their
    files into ``paths`` (``RUN_ID/variant_N*``), their containers removed; nothing without ``paths``."""

    def __init__(self, driver: Driver, paths: RunPaths | None):
        import queue
        self.driver, self.paths = driver, paths
        self.queue: queue.Queue[tuple[int, dict] | None] = queue.Queue()
        self.added: set[int] = set()
        self.thread = threading.Thread(target=self._work, name='tg-sweep-collector', daemon=True)
        if paths is not None:
            self.thread.start()

    def add(self, index: int, item: dict) -> None:
        if self.paths is not None and index not in self.added:
            self.added.add(index)
            self.queue.put((index, item))

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            index, item = job
            try:
                result, _ = self.driver.backend.collect_variant(item, self.paths, index,
                                                                self.driver.spec.variants[index], logs_saved=True)
                self.driver.ended_codes[index] = result.exit_code if result is not None else None
            except Exception:  # noqa: BLE001 - gone meanwhile (stopped and collected elsewhere): collect() says
                pass

    def close(self) -> None:
        if self.paths is not None:
            self.queue.put(None)
            self.thread.join()


def follow_variant(backend, index: int, item: dict, sink, lock, paths: RunPaths | None = None,
                   ended: threading.Event | None = None) -> threading.Thread:
    """A thread that streams variant ``index``'s output (its container ``item``) into ``sink`` (and its files in
    ``paths``) until it ends; then sets ``ended``."""
    handle = backend.variant_handle(item)
    out = VariantSink(sink, index, lock, paths)

    def follow():
        try:
            backend.inner_watch(handle, out)
        except Exception:  # noqa: BLE001 - collected meanwhile, or the connection went: its files say it all
            pass
        finally:
            out.close()
            if ended is not None:
                ended.set()
    thread = threading.Thread(target=follow, name=f'tg-sweep-variant-{index}', daemon=True)
    thread.start()
    return thread


# --- the sweep's state, collected ----------------------------------------------------------------------
def state_text(count: int, found: Found, collected: set) -> tuple[str, bool]:
    """(``4 variants: 2 running, 1 queued, 1 exited 0``, whether it still runs)."""
    states: dict[str, int] = {}
    for index in range(count):
        item = found.variants.get(index)
        if item is not None:
            state = item.get('State') or '?'
            key = 'running' if state in RUNNING else f'exited {exit_code(item)}' if state == 'exited' else state
        elif index in collected:
            key = 'collected'
        else:
            key = 'queued' if found.marker is not None else 'not started'
        states[key] = states.get(key, 0) + 1
    order = ['running', 'created', 'queued']
    parts = sorted(states.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
    running = states.get('running', 0) + states.get('created', 0) + states.get('queued', 0) > 0
    return f'{count} variant{"s" if count != 1 else ""}: ' + ', '.join(f'{n} {s}' for s, n in parts), running


def variant_entry(index: int, label: str, result: RunResult | None, stopped: bool, gpu_ids: str = '') -> dict:
    """One variant's line of the sweep's record (the keys of a swarm run's variants, and its GPUs)."""
    if result is None:
        return {'variant': index, 'label': label, 'state': 'not started', 'exit_code': None, 'ok': False,
                'error': 'the sweep was stopped before it started', 'run_dir': None, 'timed_out': False,
                'max_runtime_s': 0}
    code = result.exit_code
    state = 'complete' if code == 0 else 'stopped' if stopped and code in STOPPED_CODES else 'failed'
    return {'variant': index, 'label': label, 'state': state, 'exit_code': code, 'ok': state == 'complete',
            'error': '', 'run_dir': str(result.run_dir) if result.run_dir else None, 'timed_out': result.timed_out,
            'max_runtime_s': result.max_runtime_s, 'oom_killed': result.oom_killed, 'gpu_ids': gpu_ids}


def sweep_record(handle: RunHandle, entries: list[dict], started, finished) -> dict:
    return {'run_id': handle.run_id, 'job': handle.job, 'where': handle.where, 'module': handle.module,
            'version': handle.version, 'project': handle.project, 'owner': handle.owner, 'image': handle.image,
            'started': handle.started, 'started_at': started, 'finished': finished, 'variants': entries}


def variant_paths(paths: RunPaths, run_id: str) -> RunPaths:
    """Where a sweep's variants are collected: ``RUN_ID/`` of the job's runs, ``variant_N`` each."""
    return RunPaths(paths.run_dir(run_id))


def result_of_record(record: dict, paths: RunPaths, where: str, host: str) -> RunResult:
    """The sweep's RunResult from its record (each failed variant with its traceback)."""
    from tg_pipeline.runs.results import read_text
    from tg_pipeline.runtime import protocol
    module = record.get('module', '')
    variants = [Variant(entry, module) for entry in record.get('variants', [])]
    for variant in variants:
        if not variant.get('ok'):
            variant['traceback'] = read_text(variant.get('run_dir'), protocol.TRACEBACK_FILE)
    return RunResult(run_id=record['run_id'], where=where, host=host, job=record.get('job', ''), module=module,
                     run_dir=paths.run_dir(record['run_id']), variants=variants)


def docker_time(moment) -> str | None:
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ') if moment else None


def times(client, found: Found) -> tuple:
    """(when the sweep was made, when its last variant ended) by the host's clock."""
    start = parse_time(_inspect(client, found.marker['Id']).get('Created')) if found.marker else None
    ends = []
    for item in found.variants.values():
        attrs = _inspect(client, item['Id'])
        ends.append(parse_time((attrs.get('State') or {}).get('FinishedAt')))
        start = start or parse_time(attrs.get('Created'))
    return start, max([e for e in ends if e], default=None)


def _inspect(client, ref: str) -> dict:
    try:
        return client.api.inspect_container(ref)
    except docker.errors.NotFound:
        return {}


def no_such_variant(run_id: str, index: int, count: int) -> PipelineError:
    return PipelineError(f'sweep run {run_id} has no variant {index}: its variants are 0 to {count - 1}',
                         hint=f'e.g. variant={count - 1}')
