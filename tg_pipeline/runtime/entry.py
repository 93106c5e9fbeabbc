"""The job package's entry point: ``python -m MODULE`` loads the job from its resources and runs it.

Standard library only, so the container starts fast. In a job package this is
``MODULE._tg_runtime.entry`` and the package is the folder above ``_tg_runtime``; its metadata
(package, version, module, source roots) is in ``MODULE/_tg_meta.json``. The names shared with the
host (environment, run folder, files, marker lines) are in :mod:`.protocol`.

The source roots are importable by their own names too (``jobs.x`` is ``MODULE.jobs.x``): see
:func:`install_aliases`.

The job's exit status is the process's: 0 when ``run()`` returns (or the job calls ``sys.exit(0)``),
the job's own ``sys.exit(N)``, 1 for an exception, 130 for KeyboardInterrupt, 1 for a return value that cannot
be pickled (a generator, a lock: the caller cannot have it; ``exit.json`` says why).

In tg_pipeline's container runs, :func:`run_teed` keeps exact copies of the job's stdout and stderr beside the
engine's log (``protocol.LOG_DIR``).
"""
from __future__ import annotations

import json
import os
import pickle
import sys
import time

from . import protocol, reference, trace as user_trace
from .aliases import install_aliases
from .tee import run_teed


def log(message):
    now = time.time()  # local time to the microsecond, as str(datetime.now()) has it (datetime costs a start 4 ms)
    print(f'{time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))}.{int(now % 1 * 1e6):06d} INFO: {message}',
          flush=True)


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
        self.root_paths = dict(meta.get('root_paths') or {})  # root name -> its path in the project
        self.resources_dir = os.path.join(self.package_dir, protocol.RESOURCES_DIR)
        self._aliased = False

    def alias_roots(self):
        """Make the source roots importable by their own names (``jobs.x`` is ``MODULE.jobs.x``), as far as
        this process lets them (see :func:`install_aliases`); ImportError when the package's code needs a name another
        package or module has."""
        if not self._aliased:
            install_aliases(self.module, self.roots, self.package_dir)
            self._aliased = True

    def resources(self) -> list:
        if not os.path.isdir(self.resources_dir):
            return []
        return sorted(f[:-4] for f in os.listdir(self.resources_dir) if f.endswith('.pkl'))

    def load_resource(self, name: str):
        """The payload object ``name``; a job's reference record (:mod:`.reference`) is built into the job
        (every one of a list of variants)."""
        value = self.load_raw(name)
        if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 and reference.is_record(v[1])
                                                     for v in value):
            return [(label, self.job_of(job)) for label, job in value]
        return self.job_of(value)

    def load_raw(self, name: str):
        """The payload object ``name`` as it was pickled (a reference record stays a record)."""
        self.alias_roots()
        with open(os.path.join(self.resources_dir, name + '.pkl'), 'rb') as file:
            return _Unpickler(file, self.module, self.roots).load()

    def paths(self) -> user_trace.Paths:
        """The package's files as the project's paths, and our own frames (for tracebacks)."""
        return user_trace.package_paths(self.package_dir, self.roots, self.root_paths)

    def job_of(self, value):
        """The job: ``value`` itself, or built from it when it is a reference record."""
        if not reference.is_record(value):
            return value
        self.alias_roots()
        return reference.build(value, self.paths().shown, self.qualified)

    def qualified(self, name: str) -> str:
        """A source root's module as this package's own (``jobs.x`` is ``MODULE.jobs.x``), as the unpickler loads
        classes: another job package loaded first in this process may own the root's plain name."""
        return f'{self.module}.{name}' if name.split('.')[0] in self.roots else name


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
    variants = entry.load_raw('variants')
    label, job = variants[index]
    log(f'Variant {index} of {len(variants)}: {label}')
    return index, entry.job_of(job)


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
        """Keep the return value (pickle, else cloudpickle); why it cannot be kept (``cannot pickle 'generator'
        object``), or None. Without a run folder nothing is kept, and nothing is wrong."""
        if not self.dir:
            return None
        try:
            data = pickle.dumps(result, protocol=4)
        except Exception:
            try:
                import cloudpickle  # only now: the start stays fast
                data = cloudpickle.dumps(result, protocol=4)
            except Exception as e:
                log(f'The return value could not be pickled and is not kept: {type(e).__name__}: {e}')
                return str(e) or type(e).__name__
        self.keep(protocol.RESULT_FILE, data)
        self.keep(protocol.RESULT_INFO_FILE, json.dumps({'type': type(result).__name__}).encode())
        return None

    def keep_exit(self, code: int, reason: str, error: str = ''):
        found = {'exit_code': code, 'reason': reason, **({'error': error} if error else {})}
        self.keep(protocol.EXIT_FILE, json.dumps(found, sort_keys=True).encode())

    def send(self, index):
        """Print the run folder as marker lines (``ENV_SEND_BACK``: where it cannot be copied back)."""
        if not self.send_back or not self.dir:  # send_back implies dir
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
    index, entry = None, None
    try:
        log('Loading job')
        entry = EntryPoint(entry_dir)
        index, job = load_job(entry, environ)
        log(f'Job of type {type(job)} is loaded')
        result = run(job)
    except SystemExit as stop:
        code = exit_status(stop.code)
        return index, code, protocol.REASON_OK if code == 0 else protocol.REASON_SYS_EXIT, None, None
    except reference.LoadError as error:  # the job could not be built from pipeline.toml's record: one paragraph
        return index, 1, protocol.REASON_EXCEPTION, None, error.paragraph() + '\n'
    except BaseException as error:
        code = 130 if isinstance(error, KeyboardInterrupt) else 1
        return index, code, protocol.REASON_EXCEPTION, None, shown_traceback(error, entry)
    return index, 0, protocol.REASON_OK, result, None


def shown_traceback(error: BaseException, entry) -> str:
    """The job's traceback with the project's paths and without our frames (all of it with TG_PIPELINE_DEBUG)."""
    try:
        paths = entry.paths() if entry is not None else user_trace.Paths([], [os.path.dirname(__file__)])
        return user_trace.format_error(error, paths)
    except Exception:  # noqa: BLE001 - never lose the error for want of a nicer form
        import traceback
        return ''.join(traceback.format_exception(type(error), error, error.__traceback__))


def main(package_dir=None, environ=None) -> int:
    """Run the package's job (its variant for this task slot); return the exit status.

    ``environ`` (default ``os.environ``) holds the settings the host gave (:mod:`.protocol` ``ENV_*``).
    With a run folder, the output folder is set as ``ENV_OUTPUT`` in it and in ``os.environ`` (the job's).
    In a tg_pipeline container run (the run folder at ``protocol.RUN_DIR``, nothing to send back), the job runs
    in a child process whose stdout and stderr are copied into ``protocol.LOG_DIR`` (:func:`run_teed`).
    With a time limit (``ENV_MAX_RUNTIME``), the job is stopped after that many seconds (see :func:`within`).
    """
    environ = os.environ if environ is None else environ
    take_secrets(environ)
    if keeps_log_copies(environ):
        return run_teed(protocol.LOG_DIR, lambda: _main(package_dir, environ), protocol.RUN_DIR,
                        after=lambda: hand_over(environ, (protocol.RUN_DIR, protocol.LOG_DIR)), finish=exit_now)
    return _main(package_dir, environ)


def hand_over(environ, folders) -> None:
    """Give what is in ``folders`` (bind mounts of the host's folders) to the host's user (``ENV_HOST_OWNER``,
    ``UID:GID``), so that it may read and remove them; nothing to do without it, or when not root here."""
    uid, _, gid = environ.get(protocol.ENV_HOST_OWNER, '').partition(':')
    if not (uid.isdigit() and gid.isdigit()) or not hasattr(os, 'geteuid') or os.geteuid() != 0:
        return
    for top in folders:
        for folder, dirs, files in os.walk(top):
            for path in [folder] + [os.path.join(folder, name) for name in dirs + files]:
                try:
                    os.lchown(path, int(uid), int(gid))
                except OSError:
                    pass


def exit_now(code: int):
    """End the job's process as Python's exit does, but for the teardown of its modules: its non-daemon threads
    are waited for, its atexit handlers run (``weakref.finalize`` too), every open file it writes is flushed, then
    the process ends. A job that imported scipy and scikit-learn spends about half a second tearing them down
    otherwise, at every run, after its work is done and kept."""
    import atexit
    import gc
    import io
    import threading
    try:
        # private (typeshed has it not): what Python's own exit calls first
        threading._shutdown()  # type: ignore[attr-defined]  # noqa: SLF001
    except Exception:  # noqa: BLE001 - a thread's error is the job's; the exit goes on
        pass
    atexit._run_exitfuncs()  # noqa: SLF001 - as Python's exit does
    for found in gc.get_objects():  # buffered writes of files left open (a module's global, a cycle)
        if isinstance(found, io.IOBase):
            try:
                if not found.closed and found.writable():
                    found.flush()
            except Exception:  # noqa: BLE001 - a file we cannot flush is no worse than before
                pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def take_secrets(environ, stdin=None) -> None:
    """secret_env: the values of the variables ``ENV_SECRETS`` names, into ``environ`` (and ``os.environ``, the
    job's), from the files in ``ENV_SECRETS_DIR`` (swarm: Docker secrets) or else from stdin (one JSON object, then
    its end: the host writes it there once the container started). A value that did not come is left unset."""
    names = [n for n in (environ.get(protocol.ENV_SECRETS) or '').split(',') if n]
    if not names:
        return
    folder = environ.get(protocol.ENV_SECRETS_DIR)
    if folder:
        found = {}
        for name in names:
            try:
                with open(os.path.join(folder, name), encoding='utf-8') as file:
                    found[name] = file.read()
            except OSError:
                pass
    else:
        try:
            found = json.loads(_read_until_end(stdin or sys.stdin.buffer, SECRETS_WAIT_S) or b'{}')
        except (OSError, ValueError, AttributeError):
            found = {}
    for name in names:
        if isinstance(found, dict) and isinstance(found.get(name), str):
            environ[name] = os.environ[name] = found[name]
    missing = [n for n in names if n not in environ]
    if missing:
        log(f'secret_env values that did not arrive: {", ".join(missing)}')


SECRETS_WAIT_S = 300  # the host writes them as the container starts; a stdin nobody writes to is given up on


def _read_until_end(stream, seconds: float) -> bytes:
    """What ``stream`` holds until its end, or until ``seconds`` passed without its end."""
    import select
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    fd = stream.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b''  # never ended: nothing to trust
        chunk = os.read(fd, 65536)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


def keeps_log_copies(environ) -> bool:
    """Whether this is a container run of tg_pipeline's, whose host fetches the copies of the job's output."""
    return (environ.get(protocol.ENV_RUN_DIR) == protocol.RUN_DIR and not environ.get(protocol.ENV_SEND_BACK)
            and hasattr(os, 'fork'))


def _main(package_dir, environ) -> int:
    log('Welcome to Training Grounds!')
    folder = _Run(environ)
    folder.prepare()
    limit = time_limit(environ)
    if limit:
        code = within(limit, lambda: _job(package_dir, environ, folder), folder, variant_index(environ))
    else:
        code = _job(package_dir, environ, folder)
    log('DONE. Exiting Training Grounds.')
    return code


def _job(package_dir, environ, folder) -> int:
    """Load and run the job, keep what it left in the run folder; its exit status."""
    index, code, reason, result, trace = _attempt(package_dir, environ)
    problem = folder.keep_result(result) if code == 0 else None
    if problem is not None:  # the caller asked for a value it cannot have: a failure, said by the host
        code, reason = protocol.RESULT_NOT_KEPT_EXIT_CODE, protocol.REASON_RESULT
        folder.keep_exit(code, reason, problem)
        folder.send(index)
        log('Job has NOT exited successfully: its return value cannot be kept')
    elif code == 0:
        folder.keep_exit(code, reason)
        folder.send(index)
        log('Job has exited successfully')
    else:
        log('Job has NOT exited successfully')
        sys.stdout.flush()
        if trace is not None:
            if not (folder.dir and trace.startswith('ERROR: ')):  # a host that reads the run folder says that one
                sys.stderr.write(trace)
                sys.stderr.flush()
            folder.keep(protocol.TRACEBACK_FILE, trace.encode())
        folder.keep_exit(code, reason)
        folder.send(index)
    return code


def time_limit(environ) -> float:
    """The job's time limit in seconds (``ENV_MAX_RUNTIME``); 0 for none."""
    try:
        return max(0.0, float(environ.get(protocol.ENV_MAX_RUNTIME) or 0))
    except ValueError:
        return 0.0


GRACE_S = 5  # after SIGTERM at the time limit, this long before SIGKILL


def within(limit: float, body, folder, index) -> int:
    """Run ``body`` in a child process, its own process group, and stop that group after ``limit`` seconds
    (SIGTERM, then SIGKILL after GRACE_S); the exit status. A stopped job's run folder records the timeout
    (``REASON_TIMEOUT``, ``TIMEOUT_EXIT_CODE``). SIGTERM and SIGINT reach the job (``docker stop``, Ctrl-C).

    A process of its own, rather than a signal in the job's process, since a job may catch exceptions, block
    in native code, or start processes of its own; and the entry point, not the host, keeps the limit, so it
    holds for detached runs and swarm tasks that nobody watches."""
    import signal
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the job
        code = 1
        try:
            os.setpgid(0, 0)
            code = body()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    try:
        os.setpgid(pid, pid)
    except OSError:  # it did so itself already
        pass
    before = {n: signal.signal(n, lambda sig, frame: _signal_group(pid, sig)) for n in (signal.SIGTERM, signal.SIGINT)}
    try:
        status = _wait(pid, limit)
        if status is None:
            status = _stop(pid, limit, folder, index)
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    return status


def _stop(pid: int, limit: float, folder, index) -> int:
    """The job's time is up: stop its process group, record the timeout."""
    import signal
    log(f'The job ran out of its time limit of {limit:g} s (max_runtime_s): stopping it')
    try:
        grace = float(os.environ.get(protocol.ENV_STOP_GRACE, GRACE_S))
    except ValueError:
        grace = GRACE_S
    for number, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        _signal_group(pid, number)
        if _wait(pid, wait) is not None:
            break
    _signal_group(pid, signal.SIGKILL)  # what the job started and left behind
    folder.keep(protocol.EXIT_FILE, json.dumps({'exit_code': protocol.TIMEOUT_EXIT_CODE, 'max_runtime_s': limit,
                                                'reason': protocol.REASON_TIMEOUT}, sort_keys=True).encode())
    folder.send(index)
    return protocol.TIMEOUT_EXIT_CODE


def _signal_group(pid: int, number) -> None:
    try:
        os.killpg(pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(pid: int, seconds) -> int | None:
    """The child's exit status once it ended within ``seconds`` (None: forever), else None."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
