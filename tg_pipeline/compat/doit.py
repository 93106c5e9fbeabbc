"""Private names of doit (``doit>=0.36,<0.38``), see :mod:`tg_pipeline.compat`: the command-line
variables, the shared sqlite3 state, where a task's outcome goes, and the process's exit."""
from __future__ import annotations
import os
import sys


DOIT_BUSY_TIMEOUT_MS = 60_000


def share_doit_state(dep_manager) -> None:
    """Autocommit + a long busy timeout on doit's sqlite3 connection (other backends: nothing); its final save
    (``dump``) stays one transaction."""
    import sqlite3
    backend = getattr(dep_manager, 'backend', None)
    conn = getattr(backend, '_conn', None)
    if not isinstance(conn, sqlite3.Connection):
        return
    try:
        if conn.isolation_level is not None:
            conn.isolation_level = None  # commits what is pending; each later statement commits itself
            conn.execute(f'PRAGMA busy_timeout = {DOIT_BUSY_TIMEOUT_MS}')
            _in_one_transaction(backend, conn)
    except sqlite3.ProgrammingError:  # already closed: the run is over
        pass


def _in_one_transaction(backend, conn) -> None:
    """doit's ``dump`` writes one row per task it ran, then commits: under autocommit each row would be a
    transaction of its own (a disk sync each: 6 rows took 5-6 ms here, against 1 ms in one transaction)."""
    dump = backend.dump

    def dump_at_once():
        if not conn.in_transaction:
            conn.execute('BEGIN IMMEDIATE')  # the write lock first, waiting up to the busy timeout
        try:
            return dump()  # its commit() ends the transaction
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
    backend.dump = dump_at_once


def command_line_vars() -> dict[str, str]:
    """doit's ``name=value`` command-line variables."""
    from doit import doit_cmd
    return dict(getattr(doit_cmd, '_CMDLINE_VARS', None) or {})


def outcome_stream():
    """Where the outcome of a task goes (``Result: ...``): its stdout, unless doit captures that stdout without
    showing it (``doit -v 0``, ``-v 1``: only a failure shows it), then the process's own stdout."""
    out = sys.stdout
    try:
        from doit.action import Writer
    except ImportError:  # pragma: no cover - doit is a dependency
        return out
    if isinstance(out, Writer) and getattr(out, 'orig_stream', None) is None and sys.__stdout__ is not None:
        out.flush()
        return sys.__stdout__
    return out


def doit_command_line() -> bool:
    """Whether this process is the ``doit`` command (``doit ...`` or ``python -m doit ...``), not a program that
    runs doit inside (the Python API, a test, ``python -m cProfile -m doit``, ``coverage run -m doit``)."""
    orig = getattr(sys, 'orig_argv', None)  # Python 3.10+: the interpreter's own command line
    if orig is not None:
        args, i = orig[1:], 0
        while i < len(args) and args[i].startswith('-') and args[i] != '-m':
            i += 2 if args[i] in ('-X', '-W') else 1
        return args[i:i + 2] == ['-m', 'doit'] or (i < len(args) and os.path.basename(args[i]) == 'doit')
    main = sys.modules.get('__main__')
    return os.path.basename(sys.argv[0] if sys.argv else '') == 'doit' or \
        getattr(getattr(main, '__spec__', None), 'name', '') == 'doit.__main__'


def doit_exit_code(failures: list, runtime_errors: list) -> int:
    """The code doit's runner returns after these failures (doit's TaskFailed / TaskError): 2 for an error (an
    exception, not a task's failure), else 1 for a failure, else 0 (doit.runner: ``final_result``)."""
    from doit.exceptions import TaskFailed
    if runtime_errors or any(not isinstance(f, TaskFailed) for f in failures):
        return 2
    return 1 if failures else 0


def raised_in_uptodate_check(error: BaseException) -> bool:
    """Whether ``error`` was raised by a task's up-to-date check: its traceback passes through doit's
    ``Dependency.get_status`` (doit.dependency), which calls the checks and lets their exceptions through."""
    import traceback
    return any(frame.name == 'get_status' and frame.filename.replace('\\', '/').endswith('doit/dependency.py')
               for frame in traceback.extract_tb(error.__traceback__))


EXIT_HANDLER_FAILED = 3  # the exit status after an exit handler raised (doit's own code for an error of its own)
_exit_failures: list = []


def watch_exit_handlers() -> None:
    """Once per process: an exit handler (atexit) that raises is said as one ERROR line and ends the process with
    :data:`EXIT_HANDLER_FAILED`, where Python itself would print "Exception ignored" and keep the exit status (0
    after a run that went well). Python reports such an exception through ``sys.unraisablehook``; a handler
    registered here, before the others, runs after them and ends the process when one failed."""
    import atexit
    if getattr(sys.unraisablehook, 'tg_pipeline', False):
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        if 'atexit' not in (unraisable.err_msg or ''):
            return previous(unraisable)
        _exit_failures.append(unraisable.exc_value)
        name = getattr(unraisable.object, '__qualname__', None) or repr(unraisable.object)
        print(f'ERROR: the exit handler {name} failed: {type(unraisable.exc_value).__name__}: '
              f'{unraisable.exc_value}', file=sys.stderr, flush=True)
        if os.environ.get('TG_PIPELINE_DEBUG') == '1':
            previous(unraisable)
    setattr(hook, 'tg_pipeline', True)  # the mark looked for above (a function's attribute)
    sys.unraisablehook = hook
    atexit.register(_end_if_a_handler_failed)


def _end_if_a_handler_failed() -> None:
    if _exit_failures:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(EXIT_HANDLER_FAILED)


def exit_now(code: int) -> None:
    """End the process with ``code`` once the exit handlers have run (atexit: logging, SSH connections ...), without
    the interpreter's teardown of every module, which for docker, paramiko and fabric loaded takes ~60 ms of
    every command. Not with TG_PIPELINE_DEBUG=1, nor while a thread the normal exit would wait for still runs.
    ``atexit._run_exitfuncs`` is CPython's (3.9 to 3.13); without it, nothing is done."""
    import atexit
    import threading
    run_handlers = getattr(atexit, '_run_exitfuncs', None)
    waiting = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if os.environ.get('TG_PIPELINE_DEBUG') == '1' or run_handlers is None or waiting:
        return
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (doit list | head): nothing more to say
            pass
    os._exit(code)
