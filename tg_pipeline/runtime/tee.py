"""Exact copies of the job's stdout and stderr (standard library only): the job runs in a child process whose
output goes through pipes to the container's own stdout/stderr (the engine's log) and to files in
``protocol.LOG_DIR``, with their size and sha256 (``protocol.LOG_DIGEST``); signals are passed on to the job,
and the exit status is the job's. See :func:`run_teed`."""
from __future__ import annotations

import json
import os
import select
import signal
import sys

from . import protocol

# --- exact copies of the job's stdout and stderr (LOG_DIR) -------------------------------------------------
# An engine's log is no byte-exact copy (json-file replaces bytes that are not UTF-8, the local driver drops
# the line end after a line over 16 KiB, a followed log may miss its end, a rotating driver keeps a part). So
# the job runs in a child process whose stdout and stderr are pipes read here: every byte goes on to this
# process's own stdout/stderr (the engine's log, streamed live) and into LOG_DIR/stdout and stderr; then
# LOG_DIR/digest.json holds their sizes and sha256, and the host fetches a copy only where its own differs.
# Signals this process gets go on to the job; its exit status is the job's (128 + N for signal N).
FORWARDED = ('SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2')
CHUNK = 1 << 16
LEFT_CHUNKS = 256  # at most 16 MiB read after the job ended (a pipe holds 64 KiB unless the job enlarged it)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Copy:
    """One stream: read from the job's pipe, written into its file ``path``, then on to ``target``. A copy that
    cannot be written (a full disk) is removed, and the bytes still go on: the engine's log is all there is."""

    def __init__(self, source: int, target: int, file: int, path: str):
        import hashlib  # only here: in the entry point's process, once the job runs (forked before it)
        self.source, self.path = source, path
        self.target: int | None = target  # None once nobody reads it
        self.file: int | None = file  # None once dropped
        self.digest, self.size = hashlib.sha256(), 0

    def pump(self) -> str:
        """Move one chunk: 'data', 'empty' (nothing there now, non-blocking) or 'end'."""
        try:
            data = os.read(self.source, CHUNK)
        except BlockingIOError:
            return 'empty'
        if not data:
            return 'end'
        if self.file is not None:
            try:
                _write_all(self.file, data)
            except OSError:
                self._drop()
        self.digest.update(data)
        self.size += len(data)
        if self.target is not None:
            try:
                _write_all(self.target, data)
            except OSError:  # nobody reads the container's own output any more: the copy goes on
                self.target = None
        return 'data'

    def _drop(self) -> None:
        if self.file is not None:
            os.close(self.file)
        self.file = None
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def close(self) -> dict | None:
        """Its size and sha256; None when there is no copy."""
        os.close(self.source)
        if self.file is None:
            return None
        os.close(self.file)
        return {'size': self.size, 'sha256': self.digest.hexdigest()}


def _status(pid: int, flags: int = 0):
    """The exit status of the job's process once it ended (128 + N for signal N), else None."""
    found, status = os.waitpid(pid, flags)
    if found == 0:
        return None
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _forward(pid: int):
    def handler(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return handler


def _pump(copies: list, pid: int) -> int:
    """Copy until the job's process ended (then what is left in the pipes) or both streams ended; its status."""
    wake_read, wake_write = os.pipe()
    for fd in (wake_read, wake_write):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below through the wakeup fd
    for name in FORWARDED:
        signal.signal(getattr(signal, name), _forward(pid))
    streams, status = {c.source: c for c in copies}, None
    while streams and status is None:
        status = _status(pid, os.WNOHANG)
        if status is not None:
            break
        ready, _, _ = select.select([*streams, wake_read], [], [])
        for fd in ready:
            if fd == wake_read:
                while _drained(wake_read):
                    pass
            elif streams[fd].pump() == 'end':
                del streams[fd]
    for copy in streams.values():  # the job ended: what it left in the pipes (bounded: a process it started
        os.set_blocking(copy.source, False)  # may still be writing), without waiting for more
        for _ in range(LEFT_CHUNKS):
            if copy.pump() != 'data':
                break
    return status if status is not None else _status(pid)


def _drained(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def run_teed(log_dir: str, job, run_dir: str | None = None, after=None, finish=None) -> int:
    """Run ``job()`` (which returns an exit status) with its stdout and stderr copied into ``log_dir``.

    In the job's process this returns what ``job()`` returned, and that process goes on as before (its exit,
    atexit handlers and threads are the job's own); in this one, the job's exit status once it ended. Where
    ``log_dir`` cannot be written, the job just runs, without copies. The digest goes into ``log_dir`` and, when
    the job left a ``run_dir``, into that too (``protocol.RUN_LOG_DIGEST``); then ``after()`` runs, in this
    process only. ``finish``: what the job's process does with the status instead (it may end that process
    there)."""
    paths = [os.path.join(log_dir, name) for name in protocol.LOG_STREAMS]
    try:
        os.makedirs(log_dir, exist_ok=True)
        files = [os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for path in paths]
    except OSError:
        return job()
    sys.stdout.flush()
    sys.stderr.flush()
    pipes = [os.pipe(), os.pipe()]
    pid = os.fork()
    if pid == 0:
        for (read, write), fd, file in zip(pipes, (1, 2), files):
            os.dup2(write, fd)
            for unused in (read, write, file):
                os.close(unused)
        return finish(job()) if finish else job()
    for _, write in pipes:
        os.close(write)
    copies = [_Copy(read, fd, file, path) for (read, _), fd, file, path in zip(pipes, (1, 2), files, paths)]
    status = _pump(copies, pid)
    digest = {name: copy.close() for name, copy in zip(protocol.LOG_STREAMS, copies)}
    text = json.dumps({name: found for name, found in digest.items() if found}, sort_keys=True)
    _write_digest(os.path.join(log_dir, protocol.LOG_DIGEST), text)
    if run_dir and os.path.isdir(run_dir):  # never made here: no run folder means the job died before it
        _write_digest(os.path.join(run_dir, protocol.RUN_LOG_DIGEST), text)
    if after is not None:
        after()
    return status


def _write_digest(path: str, text: str) -> None:
    """``text`` as the file ``path``, whole or not at all."""
    temporary = path + '.part'
    try:
        with open(temporary, 'w', encoding='utf-8') as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError:  # no digest: the host takes the copies as they are
        pass
