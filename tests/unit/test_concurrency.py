"""Two doit processes in one project folder, on a small dodo file of their own (no Docker): a failed step does
not keep the other from saving its state. (Many processes at once: tests/integration/test_concurrency.py.)

A step that must still be going while the test looks waits for a file the test creates (``release``), never for
a time.
"""
import textwrap

from conftest import Project, wait_for

GUARDED_DODO = '''
import os, time
from doit.tools import config_changed
from tg_pipeline.workflow.locks import JobLock, doit_config
DOIT_CONFIG = {**doit_config('build'), 'verbosity': 2}
LOCK = JobLock('build/J/.lock', 'J')

def held():  # until the test creates the file: at most 10 minutes (a failed test leaves no process for long)
    deadline = time.monotonic() + 600
    while not os.path.exists('release') and time.monotonic() < deadline:
        time.sleep(0.02)

def slow_copy():
    with open('executions', 'a') as file:
        file.write(f'start {os.getpid()}\\n')
    held()
    data = open('in.txt').read()
    with open('out.txt', 'w') as file:
        file.write(data)
    with open('executions', 'a') as file:
        file.write(f'end {os.getpid()}\\n')

def fail():
    open('failed', 'w').close()
    return False

def task_copy():
    return LOCK.guard('copy', dict(actions=[slow_copy], file_dep=['in.txt'], targets=['out.txt'],
                                   uptodate=[config_changed({'mode': 'copy'})]))

def task_fail():
    return LOCK.guard('fail', dict(actions=[fail], uptodate=[False]))

def long():
    open('long started', 'w').close()
    held()

def task_long():
    return dict(actions=[long], uptodate=[False])

def task_ok():
    return dict(actions=[lambda: None], uptodate=[False])
'''


def dodo_project(tmp_path, text: str) -> Project:
    project = Project(tmp_path)
    project.write('dodo.py', textwrap.dedent(text))
    return project


def test_a_failed_step_does_not_keep_other_processes_from_saving(tmp_path):
    project = dodo_project(tmp_path, GUARDED_DODO)
    failing = project.popen('--continue', 'fail', 'long')  # fails, then runs on until killed
    try:
        # the next task started: doit has removed the failed one's record (the delete pending until it ends)
        wait_for(lambda: project.path('long started').exists(), what='the task after the failed one')
        other = project.doit('ok', check=False, timeout=60)
        assert other.returncode == 0, other.stderr  # before: "database is locked" after 5 s
        assert failing.poll() is None  # the failed run was still going (its delete pending) all that time
    finally:
        failing.kill()
        failing.wait(timeout=60)


def test_doits_final_save_is_one_transaction(tmp_path):
    """Under autocommit each row doit saves at its end would be a transaction (a disk sync) of its own."""
    import sqlite3
    from doit.dependency import Dependency, SqliteDB
    from tg_pipeline.compat.doit import share_doit_state
    manager = Dependency(SqliteDB, str(tmp_path / 'state.sqlite3'))
    share_doit_state(manager)
    conn = manager.backend._conn
    outside = []
    conn.set_trace_callback(lambda sql: outside.append(sql) if sql.startswith('insert') and not conn.in_transaction
                            else None)
    for task in ('a', 'b', 'c'):
        manager.backend.set(task, 'checker', 'md5')
    manager.close()
    assert outside == []
    with sqlite3.connect(tmp_path / 'state.sqlite3') as saved:
        assert sorted(r[0] for r in saved.execute('select task_id from doit')) == ['a', 'b', 'c']


ASKING_DODO = '''
from tg_pipeline.workflow.locks import JobLock, doit_config
DOIT_CONFIG = {**doit_config('build'), 'verbosity': 2}

def on_engine():  # stands for a check that asks an engine or a registry
    with open('asked', 'a') as file:
        file.write('asked\\n')
    return True

def copy():
    with open('out.txt', 'w') as file:
        file.write(open('in.txt').read())

def task_copy():
    return JobLock('build/J/.lock', 'J').guard('copy', dict(actions=[copy], file_dep=['in.txt'], targets=['out.txt'],
                                                             uptodate=[on_engine]))
'''


def test_a_check_that_asks_an_engine_is_asked_only_when_the_inputs_are_the_same(tmp_path):
    project = dodo_project(tmp_path, ASKING_DODO)
    asked = lambda: project.read('asked').count('asked') if project.path('asked').exists() else 0  # noqa: E731
    project.write('in.txt', 'one')
    assert 'copy' in project.doit('copy').stdout and asked() == 0  # a first build: nothing to ask
    assert '-- copy' in project.doit('copy').stdout and asked() == 1  # nothing changed: asked, and it holds
    project.write('in.txt', 'two')
    assert '.  copy' in project.doit('copy').stdout and asked() == 1  # an edit: it runs, nobody asked
    assert project.read('out.txt') == 'two'


def test_a_target_the_step_left_as_it_was_is_not_hashed_again(tmp_path, monkeypatch):
    """A code edit rewrites the sdist but leaves the base code layer (megabytes): its stamp keeps that hash."""
    import os
    from tg_pipeline import paths
    from tg_pipeline.workflow import locks
    (tmp_path / 'in.txt').write_text('one')
    kept, made = tmp_path / 'base.tar', tmp_path / 'out.txt'

    def step():
        if not kept.exists():
            kept.write_bytes(b'base layer' * 1000)
        made.write_text((tmp_path / 'in.txt').read_text())
    task = locks.JobLock(tmp_path / '.lock', 'J').guard('copy', dict(
        actions=[step], file_dep=[str(tmp_path / 'in.txt')], targets=[str(kept), str(made)]))
    guarded = task['uptodate'][-1]
    task['actions'][0]()
    hashed = []
    real = paths.file_sha256
    monkeypatch.setattr(paths, 'file_sha256', lambda path: hashed.append(os.path.basename(path)) or real(path))
    (tmp_path / 'in.txt').write_text('two')
    task['actions'][0]()
    assert 'out.txt' in hashed and 'base.tar' not in hashed  # the rewritten target is hashed, the kept one not
    assert guarded() is True and made.read_text() == 'two'
