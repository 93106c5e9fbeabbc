"""Any number of doit processes in one project folder at once: shared state, per-job locks.

doit keeps what it knows about finished tasks in one state file and writes it when
the process ends. Its ``dbm`` backend (here dbm.dumb: this Python has no gdbm or
ndbm) lets processes at once corrupt the file (every later run dies with a
JSONDecodeError until it is deleted); its ``json`` backend rewrites the whole file
from each process's copy, so the last process to end drops what the others
recorded. Its ``sqlite3`` backend writes one row per task, in a transaction, under
SQLite's own file locking: processes at once merge their records.

API
---
``doit_config(build_dir) -> dict``
    The DOIT_CONFIG entries for the state: doit's sqlite3 backend in
    ``build_dir/.doit.sqlite3``.

``JobLock(path, job)``
    A cross-process lock: ``fcntl.flock`` on ``path`` (``build/JOB/.lock``). A
    blocking context manager; it prints ``waiting for another doit process
    building JOB (pid N)`` on stderr while another process holds it. Not
    re-entrant; threads each take it in turn like processes.

``JobLock.guard(step, task) -> dict``
    The doit task dict with its (python) actions run under the lock, as one step.
    After a success it writes a stamp, ``build/JOB/.steps/STEP.json``: the
    contents of the task's ``file_dep``, its ``config_changed`` values and the
    targets made from them. Once the action holds the lock it re-checks: when the
    stamp matches the current inputs and targets, the task's other plain
    ``uptodate`` callables hold, and the stamp is news to this process (written
    after this process checked the step, or by a doit process still running, whose
    doit state is saved only when it ends), the step is not done again; a line on
    stderr says so. The stamp is also an ``uptodate`` check: doit's record (which
    it takes after the lock is released) counts only together with the stamp. The task's
    plain ``uptodate`` callables move into that check, which calls them only when the
    stamp matches (they ask an engine or a registry; after an edit the step runs anyway).

That ``uptodate`` check also sets doit's SQLite connection to autocommit with a
60 s busy timeout (``share_doit_state``): doit deletes a failed task's row right away but
commits only when the run ends, and until then every other process that ended failed
to save its state ("database is locked" after 5 s, e.g. under ``doit --continue``).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from doit.dependency import UptodateCalculator
from doit.exceptions import BaseFail
from doit.tools import config_changed

from tg_pipeline.compat.doit import share_doit_state
from tg_pipeline.paths import dict_of, file_states, read_record

STATE_FILE = '.doit.sqlite3'


def _file_state(value) -> bool:
    """[size, mtime_ns, sha256]"""
    return isinstance(value, list) and len(value) == 3 and all(
        isinstance(v, t) and not isinstance(v, bool) for v, t in zip(value, (int, int, str)))


# a stamp (build/JOB/.steps/STEP.json) as :meth:`_Guard.write` writes it
STAMP = {'inputs': str, 'files': dict_of(_file_state), 'targets': dict_of(_file_state), 'pid?': int,
         'pid_start?': (str, type(None)), 'written?': (int, float)}


def doit_config(build_dir) -> dict:
    """DOIT_CONFIG entries for a state file that doit processes at once can share (one that cannot be read is set
    aside first: :func:`set_aside_if_corrupt`)."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    set_aside_if_corrupt(build_dir / STATE_FILE)
    return {'dep_file': str(build_dir / STATE_FILE), 'backend': 'sqlite3'}


def state_problem(path: Path) -> str | None:
    """Why doit's state file ``path`` cannot be read (not SQLite, a damaged page, a row that is no JSON), or None
    (also when it is missing, or busy: another doit process writes it)."""
    import sqlite3
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f'file:{path}?mode=ro', uri=True, timeout=DOIT_BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return None  # cannot even be opened: doit says why itself
    try:
        if conn.execute("select count(*) from sqlite_master where name = 'doit'").fetchone()[0]:
            for (data,) in conn.execute('select task_data from doit'):
                json.loads(data)
        problem = conn.execute('pragma quick_check').fetchone()[0]
        return None if problem == 'ok' else problem
    except sqlite3.OperationalError as e:
        return None if 'locked' in str(e) or 'busy' in str(e) else str(e)
    except (sqlite3.DatabaseError, ValueError, TypeError) as e:
        return str(e) or type(e).__name__
    finally:
        conn.close()


DOIT_BUSY_TIMEOUT_S = 60


def set_aside_if_corrupt(path: Path) -> Path | None:
    """doit's state file, when it cannot be read (see :func:`state_problem`), renamed with the time
    (``.doit.sqlite3.corrupt-20261207-014412``) and said once on stderr; doit then starts a new one, and every step
    is checked against its files again (the stamps of :class:`JobLock` still spare a rebuild). Returns the new
    name, or None."""
    problem = state_problem(path)
    if problem is None:
        return None
    aside = path.with_name(f'{path.name}.corrupt-{time.strftime("%Y%m%d-%H%M%S")}')
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another doit process set it aside just now
        return None
    print(f'doit\'s state file {path} cannot be read ({problem}): set aside as {aside.name}; a new one is '
          f'started (every step is checked again)', file=sys.stderr, flush=True)
    return aside


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None when it is not running."""
    try:
        with open(f'/proc/{pid}/stat') as file:
            return file.read().rsplit(')', 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except OSError:  # no /proc here: only whether the pid exists
        try:
            os.kill(pid, 0)
        except OSError as e:
            return '?' if e.errno == errno.EPERM else None
        return '?'


def _running(pid: int, start: str | None) -> bool:
    now = process_start(pid)
    return now is not None and (now == start or '?' in (now, start))


class JobLock:
    """An exclusive lock of one job's build steps across processes (see the module doc)."""

    def __init__(self, path, job: str):
        self.path = Path(path)
        self.job = job
        self._fd: int | None = None  # while held

    def holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock, '?' if unknown."""
        try:
            return self.path.read_text().strip() or '?'
        except OSError:
            return '?'

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f'waiting for another doit process building {self.job} (pid {self.holder()})',
                      file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc):
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def guard(self, step: str, task: dict) -> dict:
        """``task`` with its actions run under this lock, skipped when done meanwhile (module doc)."""
        guarded = _Guard(self, step, task)
        # the plain checks (is the image on the engine, the digest in the registry) ask an engine or a registry:
        # the guard asks them only when its stamp says the inputs are the same (after an edit, not at all)
        kept = [u for u in task.get('uptodate', []) if not any(u is check for check in guarded.checks)]
        return dict(task, actions=[guarded.run], uptodate=[*kept, guarded])



def _takes_no_arguments(function) -> bool:
    import inspect
    try:
        return not any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                       for p in inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False


def _hashes(states: dict) -> dict:
    return {path: state[2] for path, state in states.items()}


def _failed(result) -> bool:
    return result is False or isinstance(result, BaseFail)


class _Guard(UptodateCalculator):
    """One guarded step: its action (``run``) and its stamp check (doit calls it as an ``uptodate``)."""

    def __init__(self, lock: JobLock, step: str, task: dict):
        super().__init__()
        self.lock, self.step = lock, step
        self.name = f'{step}:{lock.job}'
        self.stamp = lock.path.parent / '.steps' / f'{step}.json'
        self.file_dep = sorted(str(f) for f in task.get('file_dep', []))
        self.targets = sorted(str(t) for t in task.get('targets', []))
        uptodate = task.get('uptodate', [])
        self.configs = [u.config for u in uptodate if isinstance(u, config_changed)]
        self.checks = [u for u in uptodate if callable(u) and not isinstance(u, (config_changed, UptodateCalculator))
                       and _takes_no_arguments(u)]
        self.actions = list(task['actions'])
        for action in self.actions:
            if not callable(action):
                raise TypeError(f'{self.name}: JobLock.guard takes python-actions (callables), got {action!r}')
        self.checked = time.time()  # until doit checks the step: when the task was made

    def setup(self, dep_manager, tasks_dict):
        super().setup(dep_manager, tasks_dict)
        share_doit_state(dep_manager)

    def __call__(self) -> bool:
        """doit's uptodate check: a stamp for exactly the current inputs and targets, and then the task's plain
        checks."""
        self.checked = time.time()
        return self.current(self.read()) and all(check() for check in self.checks)

    def read(self) -> dict:
        """The stamp; {} when it is missing or of another shape (then the step runs again)."""
        return read_record(self.stamp, STAMP) or {}

    def inputs(self, known: dict) -> tuple[str, dict] | None:
        """(digest, file states) of the inputs as they are now (hashes in ``known`` reused); None: one is missing."""
        files = file_states(self.file_dep, known)
        if files is None:
            return None
        digest = json.dumps([self.name, _hashes(files), self.configs], sort_keys=True, default=repr)
        return hashlib.sha256(digest.encode()).hexdigest(), files

    def current(self, stamp: dict) -> bool:
        """``stamp`` describes the current inputs and the targets as they are."""
        inputs = self.inputs(stamp.get('files', {}))
        targets = file_states(self.targets, stamp.get('targets', {}))
        return inputs is not None and targets is not None and inputs[0] == stamp.get('inputs') and \
            _hashes(targets) == _hashes(stamp.get('targets', {}))

    def news(self, stamp: dict) -> bool:
        """Made after this process checked the step, or by another doit process that still runs."""
        if stamp.get('written', 0) > self.checked:
            return True
        pid = stamp.get('pid')
        return isinstance(pid, int) and pid != os.getpid() and _running(pid, stamp.get('pid_start'))

    def run(self):
        """The doit action: the step's actions under the job lock, unless done meanwhile."""
        with self.lock:
            stamp = self.read()
            if stamp and self.news(stamp) and self.current(stamp) and all(check() for check in self.checks):
                print(f'{self.name}: done meanwhile by another doit process (pid {stamp.get("pid")}) '
                      f'from the same inputs: not repeated', file=sys.stderr, flush=True)
                return None
            self.stamp.unlink(missing_ok=True)
            before = self.inputs(stamp.get('files', {}))
            result = None
            for action in self.actions:
                result = action()
                if _failed(result):
                    return result
            self.write(before, stamp.get('targets', {}))
        return result

    def write(self, before: tuple[str, dict] | None, known: dict | None = None) -> None:
        """Stamp the targets with the inputs they were made from (as they were when the step started); a target
        the step left as it was (same size and mtime as in the last stamp, ``known``) is not hashed again."""
        after = self.inputs(before[1] if before else {})
        targets = file_states(self.targets, known or {})
        if before is None or after is None or targets is None or after[0] != before[0]:
            return  # a file is missing, or an input changed while the step ran: no stamp, it runs again
        pid = os.getpid()
        record = {'step': self.name, 'inputs': before[0], 'files': before[1], 'targets': targets, 'pid': pid,
                  'pid_start': process_start(pid), 'written': time.time()}
        self.stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.stamp.with_name(f'{self.stamp.name}.tmp{pid}')
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, self.stamp)
