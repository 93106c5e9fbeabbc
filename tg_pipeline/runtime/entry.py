"""The job package's entry point: ``python -m MODULE`` loads the job from its resources and runs it.

Standard library only, so the container starts fast. In a job package this is
``MODULE._tg_runtime.entry`` and the package is the folder above ``_tg_runtime``; its metadata
(package, version, module, source roots) is in ``MODULE/_tg_meta.json``. The names shared with the
host (environment, run folder, files, marker lines) are in :mod:`.protocol`.

The job's exit status is the process's: 0 when ``run()`` returns (or the job calls ``sys.exit(0)``),
the job's own ``sys.exit(N)``, 1 for an exception, 130 for KeyboardInterrupt.

In tg_pipeline's container runs, :func:`run_teed` keeps exact copies of the job's stdout and stderr beside the
engine's log (``protocol.LOG_DIR``).
"""
from __future__ import annotations

import datetime
import json
import os
import pickle
import select
import signal
import sys
import traceback

from . import protocol


def log(message):
    print(f'{datetime.datetime.now()} INFO: {message}', flush=True)


def _own_package() -> str:
    """The job package this module was copied into: the folder above ``_tg_runtime``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Unpickler(pickle.Unpickler):
    """Classes of the source roots (``jobs.x``) load from the job package (``MODULE.jobs.x``)."""

    def __init__(self, file, module: str, roots):
        super().__init__(file)
        self._module, self._roots = module, set(roots)

    def find_class(self, module, name):
        if module.split('.')[0] in self._roots:
            module = self._module + '.' + module
        return super().find_class(module, name)


class EntryPoint:
    """The payload objects of a job package (``resources/NAME.pkl``) and its metadata."""

    def __init__(self, package_dir=None):
        self.package_dir = os.path.abspath(package_dir or _own_package())
        path = os.path.join(self.package_dir, protocol.META_FILE)
        try:
            with open(path, encoding='utf-8') as file:
                meta = json.load(file)
        except FileNotFoundError:
            raise FileNotFoundError(f'{path} is missing: {self.package_dir} is no job package built by '
                                    'tg_pipeline (pass package_dir)') from None
        self.package, self.version = meta['package'], meta['version']
        self.module, self.roots = meta['module'], list(meta['roots'])
        self.resources_dir = os.path.join(self.package_dir, protocol.RESOURCES_DIR)

    def resources(self) -> list:
        if not os.path.isdir(self.resources_dir):
            return []
        return sorted(f[:-4] for f in os.listdir(self.resources_dir) if f.endswith('.pkl'))

    def load_resource(self, name: str):
        with open(os.path.join(self.resources_dir, name + '.pkl'), 'rb') as file:
            return _Unpickler(file, self.module, self.roots).load()


def run(job):
    if hasattr(job, 'run'):
        log('Job has `run` attribute')
        return job.run()
    if callable(job):
        log('Job is callable, calling directly')
        return job()
    raise TypeError(f'{type(job)} has no run() method and is not callable')


def variant_index(environ=None):
    """The sweep variant this task runs: its swarm task slot (``ENV_SLOT``, from ``{{.Task.Slot}}``), or None.
    Replicated-job slots count from 0, and the engine renders slot 0 as the node id: not a number."""
    slot = (os.environ if environ is None else environ).get(protocol.ENV_SLOT)
    if slot is None:
        return None
    return int(slot) if slot.isdigit() else 0


def load_job(entry: EntryPoint, environ=None):
    """(variant index or None, job): the slot's variant when the package has variants, else the job."""
    index = variant_index(environ)
    if index is None or 'variants' not in entry.resources():
        return None, entry.load_resource('job')
    variants = entry.load_resource('variants')
    label, job = variants[index]
    log(f'Variant {index} of {len(variants)}: {label}')
    return index, job


class _Run:
    """The run folder (when the host gave one): what the entry point keeps there."""

    def __init__(self, environ):
        self.environ = environ
        self.dir = environ.get(protocol.ENV_RUN_DIR) or None
        self.send_back = bool(self.dir and environ.get(protocol.ENV_SEND_BACK))

    def prepare(self):
        """Make the run folder and the job's output folder; tell the job where that is (``ENV_OUTPUT``)."""
        if not self.dir:
            return
        output = self.environ.get(protocol.ENV_OUTPUT) or os.path.join(self.dir, protocol.OUTPUT_DIR)
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(output, exist_ok=True)
        self.environ[protocol.ENV_OUTPUT] = output
        os.environ[protocol.ENV_OUTPUT] = output  # the job reads the process environment

    def keep(self, name: str, data: bytes):
        if self.dir:
            with open(os.path.join(self.dir, name), 'wb') as file:
                file.write(data)

    def keep_result(self, result):
        try:
            data = pickle.dumps(result, protocol=4)
        except Exception:
            try:
                import cloudpickle  # only now: the start stays fast
                data = cloudpickle.dumps(result, protocol=4)
            except Exception as e:
                log(f'The return value could not be pickled and is not kept: {type(e).__name__}: {e}')
                return
        self.keep(protocol.RESULT_FILE, data)
        self.keep(protocol.RESULT_INFO_FILE, json.dumps({'type': type(result).__name__}).encode())

    def keep_exit(self, code: int, reason: str):
        self.keep(protocol.EXIT_FILE, json.dumps({'exit_code': code, 'reason': reason}, sort_keys=True).encode())

    def send(self, index):
        """Print the run folder as marker lines (``ENV_SEND_BACK``: where it cannot be copied back)."""
        if not self.send_back:
            return
        import tarfile
        import tempfile
        with tempfile.TemporaryFile() as spool:  # part by part: a large output folder never sits in memory
            with tarfile.open(fileobj=spool, mode='w:gz') as tar:
                tar.add(self.dir, arcname='.')
            raw, parts = protocol.marker_parts(spool.tell())
            spool.seek(0)
            for part in range(1, parts + 1):
                print(protocol.marker_line(index or 0, protocol.SEND_BACK_FILE, part, parts, spool.read(raw)))
        sys.stdout.flush()


def exit_status(code) -> int:
    """The exit status for ``sys.exit(code)``: Python's for None (0), 0-255, and a message (to stderr, 1).
    A number outside 0-255, which the system would wrap (256 into 0), is a failure: 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        if 0 <= code <= 255:
            return code
        print(f'exit status {code} is out of the range 0-255: exiting with 1', file=sys.stderr, flush=True)
        return 1
    print(code, file=sys.stderr, flush=True)
    return 1


def _attempt(entry_dir, environ):
    """Load and run the job: (variant index, exit status, reason, result, traceback text or None)."""
    index = None
    try:
        log('Loading job')
        index, job = load_job(EntryPoint(entry_dir), environ)
        log(f'Job of type {type(job)} is loaded')
        result = run(job)
    except SystemExit as stop:
        code = exit_status(stop.code)
        return index, code, protocol.REASON_OK if code == 0 else protocol.REASON_SYS_EXIT, None, None
    except BaseException as error:
        code = 130 if isinstance(error, KeyboardInterrupt) else 1
        return index, code, protocol.REASON_EXCEPTION, None, traceback.format_exc()
    return index, 0, protocol.REASON_OK, result, None


def main(package_dir=None, environ=None) -> int:
    """Run the package's job (its variant for this task slot); return the exit status.

    ``environ`` (default ``os.environ``) holds the settings the host gave (:mod:`.protocol` ``ENV_*``).
    With a run folder, the output folder is set as ``ENV_OUTPUT`` in it and in ``os.environ`` (the job's).
    In a tg_pipeline container run (the run folder at ``protocol.RUN_DIR``, nothing to send back), the job runs
    in a child process whose stdout and stderr are copied into ``protocol.LOG_DIR`` (:func:`run_teed`).
    """
    environ = os.environ if environ is None else environ
    if keeps_log_copies(environ):
        return run_teed(protocol.LOG_DIR, lambda: _main(package_dir, environ))
    return _main(package_dir, environ)


def keeps_log_copies(environ) -> bool:
    """Whether this is a container run of tg_pipeline's, whose host fetches the copies of the job's output."""
    return (environ.get(protocol.ENV_RUN_DIR) == protocol.RUN_DIR and not environ.get(protocol.ENV_SEND_BACK)
            and hasattr(os, 'fork'))


def _main(package_dir, environ) -> int:
    log('Welcome to Training Grounds!')
    folder = _Run(environ)
    folder.prepare()
    index, code, reason, result, trace = _attempt(package_dir, environ)
    if code == 0:
        folder.keep_result(result)
        folder.keep_exit(code, reason)
        folder.send(index)
        log('Job has exited successfully')
    else:
        log('Job has NOT exited successfully')
        sys.stdout.flush()
        if trace is not None:
            sys.stderr.write(trace)
            sys.stderr.flush()
            folder.keep(protocol.TRACEBACK_FILE, trace.encode())
        folder.keep_exit(code, reason)
        folder.send(index)
    log('DONE. Exiting Training Grounds.')
    return code


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
        import hashlib  # only here: a run without copies starts without it
        self.source, self.target, self.file, self.path = source, target, file, path
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


def run_teed(log_dir: str, job) -> int:
    """Run ``job()`` (which returns an exit status) with its stdout and stderr copied into ``log_dir``.

    In the job's process this returns what ``job()`` returned, and that process goes on as before (its exit,
    atexit handlers and threads are the job's own); in this one, the job's exit status once it ended. Where
    ``log_dir`` cannot be written, the job just runs, without copies."""
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
        return job()
    for _, write in pipes:
        os.close(write)
    copies = [_Copy(read, fd, file, path) for (read, _), fd, file, path in zip(pipes, (1, 2), files, paths)]
    status = _pump(copies, pid)
    digest = {name: copy.close() for name, copy in zip(protocol.LOG_STREAMS, copies)}
    temporary = os.path.join(log_dir, protocol.LOG_DIGEST + '.part')
    try:
        with open(temporary, 'w', encoding='utf-8') as file:
            json.dump({name: found for name, found in digest.items() if found}, file, sort_keys=True)
        os.replace(temporary, os.path.join(log_dir, protocol.LOG_DIGEST))
    except OSError:  # no digest: the host takes the copies as they are
        pass
    return status
