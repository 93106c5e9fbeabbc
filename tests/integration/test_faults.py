"""Faults that lose data or mislead, on the real local engine and the simulated remote: Ctrl-C keeps what a
run left, the job's exit status is the run's, logs are saved byte for byte, and the doit process stays small
whatever the job prints, writes or returns."""
import importlib.util
import json
import re
import signal
import subprocess
import sys

import pytest

from conftest import PROJECTS, wait_for

from unit.test_faults import assert_exit_status_reported

from .conftest import HOLD, release
from .test_lifecycle import engine, ours, run_id_of

WHERE = ['local', 'remote']


def fixture_jobs():
    """The fixture project's jobs/faults.py, imported here for the bytes its jobs write."""
    spec = importlib.util.spec_from_file_location('basic_faults', PROJECTS / 'basic' / 'jobs' / 'faults.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(project, where, job):
    project.doit('build_image' if where == 'local' else 'push', f'job={job}')


def runs_dir(project, job, where):
    return project.path(f'build/{job}/runs/{where}')


def wait_until_exited(client, job, project):
    wait_for(lambda: [c for c in ours(client, job, project) if c.status == 'exited'], what=f'{job} to exit')


# --- 1. Ctrl-C --------------------------------------------------------------------------------------------
def test_ctrl_c_while_following_only_detaches(project, docker_client):
    run_id = run_id_of(project.doit('run_local', 'job=Counter', 'detach=1', HOLD).stdout)
    follower = project.popen('logs', 'job=Counter', f'run_id={run_id}', 'follow=1')
    saved = runs_dir(project, 'Counter', 'local') / f'{run_id}.out'
    wait_for(lambda: saved.exists() and 'line 1\n' in saved.read_text(), what='the follower to show line 1')
    follower.send_signal(signal.SIGINT)
    stdout, stderr = follower.communicate(timeout=60)
    assert follower.returncode != 0
    assert f'Interrupted: stopped following; run {run_id} keeps running' in stderr, stderr
    assert 'Traceback' not in stderr
    assert [c.status for c in ours(docker_client, 'Counter', project)] == ['running']
    assert re.search(rf'{run_id}\s+running', project.doit('status', 'job=Counter').stdout)
    assert release(*ours(docker_client, 'Counter', project)) == 1
    followed = project.doit('logs', 'job=Counter', f'run_id={run_id}', 'follow=1')
    assert re.findall(r'^line \d+$', followed.stdout, re.M) == [f'line {i}' for i in range(16)]
    assert 'Result: 16' in followed.stdout
    assert ours(docker_client, 'Counter', project) == []
    assert re.search(rf'{run_id}\s+collected, exited 0', project.doit('status', 'job=Counter').stdout)


@pytest.mark.parametrize('where', WHERE)
def test_ctrl_c_of_an_attached_run_keeps_its_checkpoint(project, where, docker_client, remote_docker):  # noqa: F811
    client = engine(where, docker_client, remote_docker)
    build(project, where, 'Checkpoint')
    process = project.popen(f'run_{where}', 'job=Checkpoint', HOLD)
    running = wait_for(lambda: [c for c in ours(client, 'Checkpoint', project) if c.status == 'running'],
                       what='the container')
    wait_for(lambda: b'checkpoint written' in running[0].logs(), what='the checkpoint')
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert 'Interrupted: stopping container' in stderr
    assert 'Traceback' not in stderr
    run_id = running[0].labels['tg_pipeline.run_id']
    folder = runs_dir(project, 'Checkpoint', where)
    assert f'what it left is in {folder / run_id}' in stderr
    assert (folder / run_id / 'output' / 'checkpoint.txt').read_text() == 'epoch 1 done\n'
    assert 'checkpoint written' in (folder / f'{run_id}.out').read_text()
    assert ours(client, 'Checkpoint', project) == []
    status = project.doit('status', 'job=Checkpoint', f'where={where}', f'run_id={run_id}')
    assert re.search(rf'{run_id}\s+collected, exited \d+', status.stdout), status.stdout


# --- 2. exit status ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('where', WHERE)
def test_the_jobs_exit_status_is_the_runs(project, where, docker_client, remote_docker):  # noqa: F811
    build(project, where, 'SysExit')
    for how, code in (('3', 3), ('7', 7), ('0', 0), ('none', 0)):
        run = project.doit(f'run_{where}', 'job=SysExit', env={'EXIT_WITH': how}, check=False)
        run_id = run_id_of_record(project, 'SysExit', where)
        record = json.loads((runs_dir(project, 'SysExit', where) / f'{run_id}.json').read_text())
        assert record['exit_code'] == code, (how, record)
        result = project.doit('result', 'job=SysExit', f'where={where}', check=False)
        for outcome in (run, result):
            assert_exit_status_reported(outcome, code, how)


def run_id_of_record(project, job, where):
    return max(p.stem for p in runs_dir(project, job, where).glob('*.json'))


# --- 3. logs byte for byte --------------------------------------------------------------------------------
@pytest.mark.parametrize('how', ['attached', 'follow', 'result'])
@pytest.mark.parametrize('where', WHERE)
def test_logs_are_saved_byte_for_byte(project, where, how, docker_client, remote_docker):  # noqa: F811
    client = engine(where, docker_client, remote_docker)
    if how == 'attached':
        project.doit(f'run_{where}', 'job=RawBytes')
        run_id = run_id_of_record(project, 'RawBytes', where)
    else:
        run_id = run_id_of(project.doit(f'run_{where}', 'job=RawBytes', 'detach=1').stdout)
        wait_until_exited(client, 'RawBytes', project)
        if how == 'follow':
            project.doit('logs', 'job=RawBytes', f'where={where}', f'run_id={run_id}', 'follow=1')
        else:
            assert "Result: 'raw'" in project.doit('result', 'job=RawBytes', f'where={where}').stdout
    assert ours(client, 'RawBytes', project) == []
    jobs, folder = fixture_jobs(), runs_dir(project, 'RawBytes', where)
    assert (folder / f'{run_id}.err').read_bytes() == jobs.raw_payload('stderr')
    out = (folder / f'{run_id}.out').read_bytes()
    assert jobs.raw_payload('stdout') in out
    shown = project.doit('logs', 'job=RawBytes', f'where={where}', f'run_id={run_id}')  # as saved, decoded
    expected = jobs.raw_payload('stderr').decode('utf-8', 'replace')
    assert expected.replace('\r\n', '\n').replace('\r', '\n') in shown.stdout  # read with universal newlines


# --- 4. memory of the doit process ------------------------------------------------------------------------
RSS_LIMIT_MB = 150
MEASURE = '''
import resource, subprocess, sys
with open(sys.argv[1], 'wb') as out, open(sys.argv[2], 'wb') as err:
    code = subprocess.call(sys.argv[3:], stdout=out, stderr=err)
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
'''


def measured(project, tmp_path, *args):
    """(exit code, stdout, stderr, peak resident MB) of ``doit ARGS``, its output spooled to files."""
    out, err = tmp_path / 'doit.out', tmp_path / 'doit.err'
    done = subprocess.run([sys.executable, '-c', MEASURE, str(out), str(err), sys.executable, '-m', 'doit', *args],
                          cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=600)
    code, kilobytes = map(int, done.stdout.split())
    with open(out, 'rb') as file:  # the start and the end: what a person reads
        head = file.read(4096)
        file.seek(max(len(head), out.stat().st_size - 4096))
        text = (head + b'\n' + file.read()).decode('utf-8', 'replace')
    print(f'doit {" ".join(args)}: peak RSS {kilobytes / 1024:.1f} MB')
    return code, text, err.read_text(errors='replace'), kilobytes / 1024


def job_bytes(path, line):
    """How many bytes of ``path`` are in lines equal to ``line`` (the entry point's own lines aside)."""
    count, rest = 0, b''
    with open(path, 'rb') as file:
        for chunk in iter(lambda: file.read(1 << 23), b''):
            lines = (rest + chunk).split(b'\n')
            rest = lines.pop()
            count += sum(1 for item in lines if item + b'\n' == line)
    return count * len(line)


def test_memory_stays_bounded_whatever_the_job_prints(project, docker_client, tmp_path):
    build(project, 'local', 'Prints')
    line, expected = b'x' * 999 + b'\n', 200 * 1048 * 1000
    folder = runs_dir(project, 'Prints', 'local')
    code, text, err, peak = measured(project, tmp_path, 'run_local', 'job=Prints')
    assert code == 0, err
    run_id = run_id_of_record(project, 'Prints', 'local')
    assert job_bytes(folder / f'{run_id}.out', line) == expected
    assert peak <= RSS_LIMIT_MB, f'run_local (attached): {peak:.0f} MB'
    code, text, err, peak = measured(project, tmp_path, 'logs', 'job=Prints', f'run_id={run_id}')
    assert code == 0 and peak <= RSS_LIMIT_MB, f'logs of a collected run: {peak:.0f} MB'

    run_id = run_id_of(project.doit('run_local', 'job=Prints', 'detach=1').stdout)
    wait_until_exited(docker_client, 'Prints', project)
    code, text, err, peak = measured(project, tmp_path, 'logs', 'job=Prints', f'run_id={run_id}')
    assert code == 0 and peak <= RSS_LIMIT_MB, f'logs of an ended run on the engine: {peak:.0f} MB'
    code, text, err, peak = measured(project, tmp_path, 'result', 'job=Prints', f'run_id={run_id}')
    assert code == 0, err
    assert f'Result: {expected}' in text
    assert job_bytes(folder / f'{run_id}.out', line) == expected
    assert peak <= RSS_LIMIT_MB, f'result (collected without streaming): {peak:.0f} MB'


def test_memory_stays_bounded_whatever_the_job_writes(project, docker_client, tmp_path):
    build(project, 'local', 'WritesOutput')
    code, text, err, peak = measured(project, tmp_path, 'run_local', 'job=WritesOutput')
    assert code == 0, err
    output = runs_dir(project, 'WritesOutput', 'local') / run_id_of_record(project, 'WritesOutput', 'local') / 'output'
    assert sorted(p.stat().st_size for p in output.iterdir()) == [38 << 20] * 8
    assert peak <= RSS_LIMIT_MB, f'run_local of a 304 MB output folder: {peak:.0f} MB'


def test_memory_stays_bounded_whatever_the_job_returns(project, docker_client, tmp_path):
    build(project, 'local', 'ReturnsBig')
    code, text, err, peak = measured(project, tmp_path, 'run_local', 'job=ReturnsBig')
    assert code == 0, err
    run_id = run_id_of_record(project, 'ReturnsBig', 'local')
    saved = runs_dir(project, 'ReturnsBig', 'local') / run_id / 'result.pkl'
    assert saved.stat().st_size > 100 << 20
    summary = f'Result: <list, {saved.stat().st_size / 1e6:.1f} MB pickled, in {saved}>'
    assert summary in text, text[-2000:]
    assert peak <= RSS_LIMIT_MB, f'run_local returning 100 MB: {peak:.0f} MB'
    code, text, err, peak = measured(project, tmp_path, 'result', 'job=ReturnsBig')
    assert code == 0, err
    assert summary in text
    assert peak <= RSS_LIMIT_MB, f'result of a 100 MB value: {peak:.0f} MB'
