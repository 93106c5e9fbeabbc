"""The step lines (tg_pipeline.workflow.reporter) and doit's console reporter that prints them
(console_reporter), the latter driven through doit as a user runs it, on a dodo of its own."""
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from tg_pipeline.console.progress import step_note, take_step_notes
from tg_pipeline.workflow.reporter import StepLines, ran_steps, step_line, up_to_date_line, up_to_date_steps


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_a_step_that_ran_is_one_line_with_its_duration_and_notes():
    assert step_line('build_image:ExampleJob', 0.314, ['code layer only']) == \
        'build_image:ExampleJob  0.31 s (code layer only)'
    assert step_line('sdist:ExampleJob', 0.08, []) == 'sdist:ExampleJob  0.08 s'


def test_up_to_date_steps_are_one_line_per_job_and_read_back():
    line = up_to_date_line(['serialize:ExampleJob', 'build_image:ExampleJob'])
    assert line == '-- up to date: serialize, build_image [ExampleJob]'
    assert up_to_date_steps(f'x\n{line}\n-- up to date: graph\n') == {'serialize:ExampleJob',
                                                                       'build_image:ExampleJob', 'graph'}
    assert ran_steps(f'{line}\nbuild_image:ExampleJob  0.31 s (code layer only)\n2026-01-01 INFO: x\n') == \
        {'build_image:ExampleJob'}


def test_step_lines_in_order():
    written, clock = [], Clock()
    lines = StepLines(written.append, clock)
    take_step_notes()
    lines.up_to_date('dockerfile:A')
    lines.up_to_date('serialize:A')
    lines.up_to_date('dockerfile:B')  # another job: A's line is written
    step_note('left over from before')
    lines.started('build_image:B', streamed=False, document=False)
    clock.now = 1.5
    step_note('code layer only')
    lines.succeeded('build_image:B', streamed=False, document=False)
    lines.started('run_local:B', streamed=True, document=False)
    lines.succeeded('run_local:B', streamed=True, document=False)
    lines.started('config', streamed=True, document=True)
    lines.succeeded('config', streamed=True, document=True)
    lines.up_to_date('sdist:B')
    lines.started('push:B', streamed=False, document=False)
    lines.failed('push:B')
    assert ''.join(written).splitlines() == [
        '-- up to date: dockerfile, serialize [A]', '-- up to date: dockerfile [B]',
        'build_image:B  1.50 s (code layer only)', 'run_local:B', '-- up to date: sdist [B]']


DODO = '''
import sys
from doit.exceptions import TaskFailed
from tg_pipeline import compat
from tg_pipeline.workflow.reporter import console_reporter
from tg_pipeline.console.progress import step_note

DOIT_CONFIG = {'reporter': console_reporter(), 'dep_file': 'state.db', 'verbosity': 1}

def made():
    step_note('made it')
    print('made: its own output')
    open('made.txt', 'w').close()

def task_make():
    return {'actions': [made], 'targets': ['made.txt'], 'uptodate': [True], 'verbosity': 2}

def task_keep():
    return {'actions': [lambda: None], 'file_dep': ['dodo.py']}

def task_show():
    return {'actions': [lambda: print('shown output')], 'uptodate': [False], 'io': {'capture': False},
            'verbosity': 2}

def task_doc():
    return {'actions': [lambda: print('key = 1')], 'uptodate': [False], 'io': {'capture': False},
            'meta': {'document': True}, 'verbosity': 2}

def task_broken():
    return {'actions': [lambda: TaskFailed('it broke')], 'uptodate': [False]}
'''


@pytest.fixture
def dodo(tmp_path):
    (tmp_path / 'dodo.py').write_text(textwrap.dedent(DODO))
    return tmp_path


def doit(folder, *args):
    env = {'PYTHONPATH': str(REPO), 'PATH': '/usr/bin:/bin'}
    return subprocess.run([sys.executable, '-m', 'doit', *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)


def test_through_doit_each_step_is_one_line_and_a_document_stays_alone(dodo):
    first = doit(dodo, 'make', 'keep', 'show')
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == 'made: its own output' and lines[1].startswith('make  ') and lines[1].endswith(' s (made it)')
    assert lines[2].startswith('keep  ') and lines[3:] == ['show', 'shown output']
    again = doit(dodo, 'make', 'keep')
    assert again.stdout == '-- up to date: make, keep\n'
    assert doit(dodo, 'doc').stdout == 'key = 1\n'


@pytest.mark.parametrize('verbosity', ['0', '1', '2'])
def test_doit_verbosity_levels_keep_the_step_lines_and_failures_as_doit_prints_them(dodo, verbosity):
    result = doit(dodo, '-v', verbosity, 'make', 'broken')
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert ('made: its own output' in lines) == (verbosity == '2')  # -v 0 and -v 1 capture a task's stdout
    assert any(line.startswith('make  ') for line in lines)
    assert 'TaskFailed - taskid:broken' in lines and 'it broke' in lines
    assert not any(line.startswith(('.  ', '-- ')) for line in lines)
