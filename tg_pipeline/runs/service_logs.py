"""A swarm service's log read as it comes, never whole in memory: each task's bytes to its own file, and the
run folder its entry point sent as marker lines (:mod:`tg_pipeline.runtime.protocol`) decoded into a spool file.

The manager serves every task's frames, each prefixed with its details (``com.docker.swarm.task.id=ID,... ``).
A frame is one line, or a piece of a line longer than the engine's 16 KiB buffer (without a line end): a
task's frames joined in order are what it printed, byte for byte as the engine's log driver kept them.
"""
from __future__ import annotations

import base64
import binascii
from pathlib import Path

from tg_pipeline.runtime import protocol

TASK_KEY = b'com.docker.swarm.task.id'
MARKER = protocol.FILE_MARKER.encode() + b' '
LINE_LIMIT = 64 * 1024  # an unfinished line longer than this is written on as it is (no marker line is as long)


def split_frame(frame: bytes) -> tuple[str | None, bytes]:
    """(task id or None, the frame's bytes) of a service log frame read with details."""
    details, _, data = frame.partition(b' ')
    for item in details.split(b','):
        key, _, value = item.partition(b'=')
        if key == TASK_KEY:
            return value.decode('ascii', 'replace'), data
    return None, data


class Lines:
    """A task's frames as whole lines: ``feed`` returns the lines (with their line end) a frame completed, and
    whether each starts a line (a line cut at :data:`LINE_LIMIT` goes on without starting one)."""

    def __init__(self):
        self.pending, self.mid_line = b'', False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        *lines, rest = (self.pending + data).split(b'\n')
        found = []
        for line in lines:
            found.append((line + b'\n', not self.mid_line))
            self.mid_line = False
        self.pending = rest
        if len(self.pending) > LINE_LIMIT:
            found.append((self.pending, not self.mid_line))
            self.pending, self.mid_line = b'', True
        return found

    def end(self) -> list[tuple[bytes, bool]]:
        rest, self.pending = self.pending, b''
        return [(rest, not self.mid_line)] if rest else []


class Spool:
    """One file sent as marker parts, decoded part by part into ``path``; ``complete`` once every part came in
    order."""

    def __init__(self, path: Path):
        self.path, self.file = path, open(path, 'wb')
        self.next, self.carry, self.broken = 1, b'', False
        self.total: int | None = None  # the parts there are, once the first came

    def add(self, part: int, parts: int, chunk: str) -> None:
        if self.broken or part != self.next or self.total not in (None, parts):
            self.broken = True  # a part missing, repeated or out of order: this copy is not whole
            return
        data = self.carry + chunk.encode('ascii')
        usable = len(data) // 4 * 4
        try:
            self.file.write(base64.b64decode(data[:usable], validate=True))
        except binascii.Error:
            self.broken = True
            return
        self.carry, self.next, self.total = data[usable:], part + 1, parts

    @property
    def complete(self) -> bool:
        return not self.broken and self.total is not None and self.next > self.total and not self.carry

    def close(self) -> None:
        self.file.close()


class ServiceLog:
    """Reads a service log into ``folder``: ``variant_N.out`` per slot (marker lines left out), and the run folder
    archive of each slot that sent one. ``slot_of``: task id -> slot; frames of other tasks are skipped."""

    def __init__(self, folder: Path, slot_of: dict):
        self.folder, self.slot_of = Path(folder), slot_of
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lines: dict = {}
        self.logs: dict = {}
        self.spools: dict = {}

    @property
    def slots(self) -> list[int]:
        """The slots that printed anything."""
        return sorted(self.logs)

    def log_path(self, slot: int) -> Path:
        return self.folder / f'variant_{slot}.out'

    def read(self, frames) -> None:
        try:
            for frame in frames:
                task, data = split_frame(frame)
                slot = self.slot_of.get(task)
                if slot is not None:
                    self._lines(slot, self.lines.setdefault(slot, Lines()).feed(data))
            for slot, lines in self.lines.items():
                self._lines(slot, lines.end())
        finally:
            for file in [*self.logs.values(), *self.spools.values()]:
                file.close()

    def _lines(self, slot: int, lines) -> None:
        for line, starts in lines:
            marker = protocol.parse_marker(line.decode('ascii', 'replace')) if starts and line.startswith(MARKER) \
                else None
            if marker is None:
                self._log(slot).write(line)
            elif marker[1] == protocol.SEND_BACK_FILE:
                spool = self.spools.get(slot)
                if spool is None:
                    spool = self.spools[slot] = Spool(self.folder / f'.variant_{slot}.{marker[1]}')
                spool.add(marker[2], marker[3], marker[4])

    def _log(self, slot: int):
        if slot not in self.logs:
            self.logs[slot] = open(self.log_path(slot), 'wb')
        return self.logs[slot]

    def archives(self) -> dict[int, Path]:
        """slot -> its run folder archive, for the slots whose every part arrived."""
        return {slot: spool.path for slot, spool in self.spools.items() if spool.complete}


def tail(path: Path, size: int = 64 * 1024) -> str:
    """The end of a log file, decoded leniently (for error messages)."""
    if not path.exists():
        return ''
    with open(path, 'rb') as file:
        file.seek(max(0, path.stat().st_size - size))
        return file.read().decode('utf-8', 'replace')
