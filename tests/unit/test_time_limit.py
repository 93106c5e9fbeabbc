"""The time limit kept by the entry point (``TG_PIPELINE_MAX_RUNTIME_S``), without Docker: a job package run as
the container runs it (``python -m MODULE``), in a process of its own. A job that outlives its limit is
stopped, with whatever it started, and its run folder says so; one that ends in time is untouched."""
import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tg_pipeline.package import sdist
from tg_pipeline.runtime import protocol

JOBS = '''
import os
import signal
import subprocess
import time


class Sleeps:
    def __init__(self, seconds, stubborn=False, child=False):
        self.seconds, self.stubborn, self.child = seconds, stubborn, child

    def run(self):
        output = os.environ['TG_PIPELINE_OUTPUT']
        with open(os.path.join(output, 'partial.txt'), 'w') as file:
            file.write('before the limit')
        if self.stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.child:
            started = subprocess.Popen(['sleep', str(self.seconds)])
            with open(os.path.join(output, 'child.pid'), 'w') as file:
                file.write(str(started.pid))
        print('sleeping', flush=True)
        time.sleep(self.seconds)
        return 'woke up'
'''
NEVER = 300  # the jobs would sleep this long; the subprocess timeout below is far shorter


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp('src') / 'tljobs'
    root.mkdir()
    (root / '__init__.py').write_text('')
    (root / 'tasks.py').write_text(JOBS)
    sys.path.insert(0, str(root.parent))
    import tljobs.tasks
    yield tljobs.tasks
    sys.path.remove(str(root.parent))


def run_job(tmp_path, job, limit):
    """Run ``job`` as the container would, with a time limit; (exit status, output, run folder)."""
    module = 'tljob__' + uuid.uuid4().hex[:8]
    members = sdist.build_members('tljob', '1.0', module, [Path(sys.modules[type(job).__module__].__file__).parent],
                                  {'job': pickle.dumps(job, protocol=4)}, [])
    site = tmp_path / 'site'
    for name, data in members.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    run_dir = tmp_path / 'run'
    env = {**os.environ, 'PYTHONPATH': str(site / sdist.sdist_name(module, '1.0')), protocol.ENV_RUN_DIR: str(run_dir),
           protocol.ENV_MAX_RUNTIME: str(limit), protocol.ENV_STOP_GRACE: '0.2'}  # a stubborn job: SIGKILL soon
    done = subprocess.run([sys.executable, '-m', module], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr, run_dir


def exit_record(run_dir: Path) -> dict:
    return json.loads((run_dir / protocol.EXIT_FILE).read_text())


@pytest.mark.parametrize('stubborn', [False, True], ids=['stops-on-SIGTERM', 'ignores-SIGTERM'])
def test_a_job_past_its_limit_is_stopped_and_its_folder_says_so(tmp_path, source, stubborn):
    code, output, run_dir = run_job(tmp_path, source.Sleeps(NEVER, stubborn=stubborn), 1)
    assert code == protocol.TIMEOUT_EXIT_CODE == 124
    assert exit_record(run_dir) == {'exit_code': 124, 'max_runtime_s': 1.0, 'reason': 'timeout'}
    assert (run_dir / 'output' / 'partial.txt').read_text() == 'before the limit'
    assert not (run_dir / protocol.RESULT_FILE).exists()
    assert 'sleeping' in output
    assert 'The job ran out of its time limit of 1 s (max_runtime_s): stopping it' in output
    assert output.rstrip().endswith('INFO: DONE. Exiting Training Grounds.')


def alive(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()[0]
    except FileNotFoundError:
        return False
    return state != 'Z'


def test_what_the_job_started_is_stopped_with_it(tmp_path, source):
    code, _, run_dir = run_job(tmp_path, source.Sleeps(NEVER, child=True), 1)
    assert code == 124
    assert not alive(int((run_dir / 'output' / 'child.pid').read_text()))


def test_a_job_within_its_limit_ends_as_without_one(tmp_path, source):
    code, output, run_dir = run_job(tmp_path, source.Sleeps(0), 30)
    assert code == 0 and exit_record(run_dir) == {'exit_code': 0, 'reason': 'ok'}
    with open(run_dir / protocol.RESULT_FILE, 'rb') as file:
        assert pickle.load(file) == 'woke up'
    assert 'Job has exited successfully' in output and 'time limit' not in output
