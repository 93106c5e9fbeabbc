"""GPUs handed out on one host, so that no two runs share one unless asked to (``gpu_share``).

``gpus = N`` becomes N device ids, chosen under the host's GPU lock (:func:`tg_pipeline.hosts.gpus.gpu_lock`) from
the host's GPUs (its ``nvidia-smi``) minus those that running containers of its engine hold, whoever started them
(:func:`tg_pipeline.hosts.gpus.holders`). The lock is held until the run's container has started, so the next run
to pick sees it holding its GPUs. ``gpus = "all"`` and device ids (``gpus = "0,2"``) are checked against the
GPUs there and wait for those GPUs in the same way. When too few are free, a run waits in a queue, saying what
it waits for and who holds the GPUs (``gpu_wait = false``: it fails at once with that list).

A host without ``nvidia-smi`` has no NVIDIA driver: the request goes to the engine as given, which says
it cannot give GPUs (:func:`tg_pipeline.runs.resources.start_problem`).
"""
from __future__ import annotations

import contextlib
import time
from typing import Literal

from tg_pipeline.config.values import GPUs, parse_gpus
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.hosts import gpus as host_gpus
from tg_pipeline.hosts.gpus import GPU, Holder, gpu_lock, held, index_of, place

RETRY_S = 2.0  # a queued run looks again this often


def listing(gpus: list[GPU]) -> str:
    """``0 (NVIDIA A100 80GB), 1 (...)``: the GPUs of a host, for people."""
    names = {g.name for g in gpus}
    if len(names) == 1:
        return f'{", ".join(g.index for g in gpus)} ({names.pop()})'
    return ', '.join(f'{g.index} ({g.name})' for g in gpus)


def request_problem(text: str, gpus: list[GPU], where: str, job: str) -> PipelineError | None:
    """What is wrong with asking ``where`` for ``gpus = text``, knowing its GPUs; None when it may be had."""
    wanted = parse_gpus(text)
    if not wanted.wanted:
        return None
    count = len(gpus)
    if not gpus:
        return PipelineError(f'job {job} asks for GPUs (gpus = "{text}"), and {where} has none (nvidia-smi lists '
                             f'no GPU)', hint='run without GPUs: gpus=0')
    if wanted.count > count:
        return PipelineError(f'job {job} asks for {wanted.count} GPUs (gpus = "{text}"), and {where} has {count}: '
                             f'{listing(gpus)}',
                             hint=f'ask for {count} at most (gpus={count}), or for some by id: gpus={gpus[0].index}')
    unknown = [d for d in wanted.device_ids if index_of(d, gpus) not in {g.index for g in gpus}]
    if unknown:
        return PipelineError(f'job {job} asks for GPU {", ".join(unknown)} (gpus = "{text}"), which {where} does '
                             f'not have; its {count} GPUs: {listing(gpus)}',
                             hint=f'give ids it has, e.g. gpus={",".join(g.index for g in gpus[:2])}, or a count: '
                                  f'gpus={min(len(wanted.device_ids), count)}')
    return None


def choose(wanted: GPUs, gpus: list[GPU], by_gpu: dict, share: bool = False) -> tuple | None:
    """The GPU indexes to hand out for ``wanted``, or None while they are not free. A count takes the free GPUs
    of the lowest indexes; with ``share``, the least held ones, held or not."""
    indexes = [g.index for g in gpus]
    if wanted.count > 0 and not wanted.device_ids:
        if share:
            return tuple(sorted(indexes, key=lambda i: (len(by_gpu.get(i, ())), indexes.index(i)))[:wanted.count])
        free = [i for i in indexes if i not in by_gpu]
        return tuple(free[:wanted.count]) if len(free) >= wanted.count else None
    chosen = tuple(indexes) if wanted.count < 0 else tuple(index_of(d, gpus) for d in wanted.device_ids)
    return chosen if share or not any(i in by_gpu for i in chosen) else None


def holders_text(gpus: list[GPU], by_gpu: dict) -> str:
    """``3 of its 8 GPUs are free; GPU 0,1: run R (job J, variant 2) of project P of alice; GPU 3: container X``."""
    free = [g.index for g in gpus if g.index not in by_gpu]
    groups: dict[str, tuple[Holder, list[str]]] = {}
    for index, holders in by_gpu.items():
        for holder in holders:
            groups.setdefault(holder.name, (holder, []))[1].append(index)
    order = {g.index: n for n, g in enumerate(gpus)}
    ordered = sorted(groups.values(), key=lambda group: min(order.get(i, len(order)) for i in group[1]))
    held_text = '; '.join(f'GPU {",".join(sorted(ids, key=lambda i: order.get(i, len(order))))}: {holder.who()}'
                          for holder, ids in ordered)
    return f'{len(free)} of its {len(gpus)} GPUs are free' + (f' ({",".join(free)})' if free else '') + \
        (f'; {held_text}' if held_text else '')


class Allocator:
    """The GPUs of one host for the runs this process starts there (its inventory read once)."""

    def __init__(self, host, console: Console = CONSOLE):
        self.host, self.console = host, console
        self._gpus: list[GPU] | None | Literal[False] = False  # False: not read yet
        self.by_gpu: dict = {}  # GPU index -> its holders, as the last attempt found them
        self.busy: str | None = None  # who holds the GPUs the last attempt could not have, for people

    @property
    def gpus(self) -> list[GPU] | None:
        if self._gpus is False:
            self._gpus = host_gpus.inventory(self.host)
        return self._gpus

    def wanted(self, settings) -> bool:
        """Whether runs of these settings get their GPUs handed out here (a host with nvidia-smi)."""
        return parse_gpus(settings.gpus).wanted and self.gpus is not None

    def check(self, settings, job: str) -> None:
        problem = request_problem(settings.gpus, self.gpus or [], place(self.host), job)
        if problem is not None:
            raise problem

    @contextlib.contextmanager
    def attempt(self, settings, job: str):
        """Under the host's GPU lock: the GPU indexes for a run of these settings, or None when they are taken
        (the holders are in :attr:`busy`, the text for people). The lock is held until the block ends: start the
        run's container in it."""
        self.check(settings, job)
        with gpu_lock(self.host, self.console):
            gpus = self.gpus or []  # (what wanted() found: runs get GPUs here only when it found some)
            by_gpu = held(host_gpus.holders(self.host.docker, gpus))
            chosen = choose(parse_gpus(settings.gpus), gpus, by_gpu, settings.gpu_share)
            self.by_gpu, self.busy = by_gpu, None if chosen is not None else holders_text(gpus, by_gpu)
            yield chosen

    @contextlib.contextmanager
    def claim(self, settings, job: str):
        """The GPU indexes for one run, waiting in the queue while they are taken (or failing at once when
        ``gpu_wait`` is false); the lock is held until the block ends."""
        said = None
        while True:
            with self.attempt(settings, job) as chosen:
                if chosen is not None:
                    yield chosen
                    return
            if not settings.gpu_wait:
                raise self.taken(settings, job)
            if self.busy != said:
                self.console.print(f'Waiting for GPUs: job {job} asks for gpus = "{settings.gpus}" on '
                                   f'{place(self.host)}, and {self.busy} (looking again every {RETRY_S:g} s; '
                                   f'Ctrl-C stops waiting)')
                said = self.busy
            time.sleep(RETRY_S)

    def taken(self, settings, job: str) -> PipelineError:
        """The error of a run that may not wait (``gpu_wait = false``) for GPUs that are taken."""
        return PipelineError(f'job {job} asks for gpus = "{settings.gpus}" on {place(self.host)}, and {self.busy}',
                             hint='wait for them in the queue (gpu_wait=1, the default), share them with the runs '
                                  'that hold them (gpu_share=1), or ask for fewer')
