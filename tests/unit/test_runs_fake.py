"""Runs over the fake engine, through the public functions: ``runs.container.run_container`` and
``runs.lifecycle`` (status, result, stop, logs follow, cleanup). Behaviour only: what the job's
owner sees and what is left on the engine."""
import datetime
import io
import json
import pickle

import pytest

from fake_engine import FakeEngine
from tg_pipeline.errors import JobFailed, PipelineError, RemoteError
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.container import RunSpec, run_container

IMAGE = 'tgtest-greeter:0.0.1'
TRACE = 'Traceback (most recent call last):\n  File "job.py", line 3, in run\nRuntimeError: boom from the fake\n'


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def client(engine):
    return engine.client()


def spec(**changes) -> RunSpec:
    values = dict(image=IMAGE, job='Greeter', package='greeter', version='0.0.1', module='greeter__0_0_1',
                  env_names=[])
    return RunSpec(**{**values, **changes})


def run(client, tmp_path=None, **kwargs):
    """run_container with its output kept: (result or exception, stdout text, stderr text)."""
    out, err = io.StringIO(), io.StringIO()
    kwargs.setdefault('log_dir', tmp_path and tmp_path / 'runs')
    try:
        result = run_container(client, kwargs.pop('run_spec', spec()), out=out, err=err, **kwargs)
    except (JobFailed, PipelineError) as e:
        result = e
    return result, out.getvalue(), err.getvalue()


def test_success_brings_back_the_value_output_and_logs(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'Welcome\nSUCCESS\n', stderr=b'a warning\n',
                   files={'result.pkl': pickle.dumps({'sum': 45}), 'output/table.csv': b'a,b\n'})
    result, out, err = run(client, tmp_path)
    assert result['value'] == {'sum': 45} and result['exit_code'] == 0 and result['where'] == 'local'
    assert out == 'Welcome\nSUCCESS\n' and err == 'a warning\n'
    runs = tmp_path / 'runs'
    run_id = result['run_id']
    assert (runs / f'{run_id}.out').read_bytes() == b'Welcome\nSUCCESS\n'
    assert (runs / f'{run_id}.err').read_bytes() == b'a warning\n'
    assert (runs / run_id / 'output' / 'table.csv').read_text() == 'a,b\n'
    record = json.loads((runs / f'{run_id}.json').read_text())
    assert record['exit_code'] == 0 and record['oom_killed'] is False and record['job'] == 'Greeter'
    assert engine.containers == {}  # removed afterwards
    assert [c.name for c in engine.removed] == [result['container']]


def test_silent_run_prints_nothing_and_without_log_dir_keeps_no_value(engine, client):
    engine.program(IMAGE, stdout=b'hello\n', files={'result.pkl': pickle.dumps(1)})
    result, out, err = run(client, silent=True)
    assert (out, err) == ('', '')
    assert result['output'] == 'hello\n' and result['value'] is None and result['run_dir'] is None
    assert engine.containers == {}


def test_failing_job_raises_with_exit_code_and_traceback(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'Welcome\n', stderr=TRACE.encode(), exit_code=1,
                   files={'traceback.txt': TRACE})
    failure, _, err = run(client, tmp_path)
    assert isinstance(failure, JobFailed)
    assert failure.exit_code == 1 and 'job Greeter failed (local run)' in failure.message
    assert failure.remote_traceback == TRACE
    assert 'RuntimeError: boom from the fake' in failure.output_tail
    assert 'RuntimeError: boom from the fake' in err  # streamed while it ran
    assert engine.containers == {}


def test_failing_job_without_traceback_file_quotes_the_output_traceback(engine, client):
    engine.program(IMAGE, stderr=TRACE.encode() + b'DONE. Exiting Training Grounds.\n', exit_code=2)
    failure, _, _ = run(client, silent=True)
    assert failure.exit_code == 2 and failure.remote_traceback == TRACE.rstrip('\n')


def test_oom_message_names_the_memory_limit(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'allocating\n', oom=True)
    failure, _, _ = run(client, tmp_path, run_spec=spec(memory_gb=0.25))
    assert isinstance(failure, JobFailed) and failure.exit_code == 137
    assert 'exceeding its memory limit of 0.25 GB' in failure.message
    assert 'memory_gb' in failure.hint
    record = json.loads(next((tmp_path / 'runs').glob('*.json')).read_text())
    assert record['oom_killed'] is True and record['memory_gb'] == 0.25


def test_signal_kill_is_named(engine, client):
    engine.program(IMAGE, exit_code=137)
    failure, _, _ = run(client, silent=True)
    assert 'was killed by signal 9' in failure.message


def test_env_labels_and_limits_reach_the_create_request_verbatim(engine, client):
    engine.program(IMAGE)
    tricky = 'a b; $(rm -rf /) "quoted" \'single\'\nsecond line'
    environ = {'TOKEN': tricky, 'PLAIN': 'x', 'UNLISTED': 'no'}
    result, _, _ = run(client, silent=True, environ=environ,
                       run_spec=spec(env_names=['TOKEN', 'PLAIN', 'MISSING'], cpu=1.5, memory_gb=0.5))
    create = engine.last('POST', '/containers/create')
    env = dict(e.split('=', 1) for e in create.body['Env'])
    assert env == {'TOKEN': tricky, 'PLAIN': 'x', 'TG_PIPELINE_RUN_DIR': '/tg_pipeline/run',
                   'TG_PIPELINE_RUN_ID': result['run_id']}
    labels = create.body['Labels']
    assert {k: labels[k] for k in ('tg_pipeline.job', 'tg_pipeline.package', 'tg_pipeline.version',
                                   'tg_pipeline.run_id', 'tg_pipeline.where', 'tg_pipeline.module')} == {
        'tg_pipeline.job': 'Greeter', 'tg_pipeline.package': 'greeter', 'tg_pipeline.version': '0.0.1',
        'tg_pipeline.run_id': result['run_id'], 'tg_pipeline.where': 'local',
        'tg_pipeline.module': 'greeter__0_0_1'}
    host = create.body['HostConfig']
    assert host['NanoCpus'] == 1_500_000_000 and host['Init'] is True
    assert host['Memory'] == host['MemorySwap'] == 512 * 1024 ** 2
    assert create.params['name'] == result['container'] and create.body['Image'] == IMAGE


def test_missing_image_is_named_and_nothing_is_created(engine, client):
    failure, _, _ = run(client, silent=True)
    assert isinstance(failure, PipelineError)
    assert failure.message == f'image {IMAGE} is not on the local Docker engine'
    assert 'build_image' in failure.hint
    assert engine.containers == {} and engine.removed == []


def test_detach_leaves_it_running_and_returns_the_run_id(engine, client):
    engine.program(IMAGE, stdout=b'working\n')
    result, out, _ = run(client, detach=True)
    assert set(result) == {'run_id', 'container', 'where'}
    container = engine.container(result['container'])
    assert container.status == 'running' and container.labels['tg_pipeline.run_id'] == result['run_id']
    assert f'Started run {result["run_id"]} (local)' in out and 'doit logs job=Greeter' in out
    assert engine.find('GET', '/containers/*/logs') == [] and engine.find('POST', '/containers/*/wait') == []


def test_start_failure_removes_the_container(engine, client):
    import docker
    engine.program(IMAGE, start_error='OCI runtime create failed: unable to start container process')
    with pytest.raises(docker.errors.APIError, match='OCI runtime'):
        run_container(client, spec(), silent=True)
    assert engine.containers == {} and len(engine.removed) == 1


def test_lost_connection_to_a_remote_engine_leaves_the_job_running(engine, client):
    engine.program(IMAGE, stdout=b'1\n2\n', break_stream=(1, ConnectionResetError('connection reset by peer')))
    failure, out, _ = run(client, where='remote tg-remote')
    assert isinstance(failure, RemoteError)
    assert 'the connection to remote tg-remote was lost' in failure.message and 'keeps running' in failure.message
    assert 'doit logs job=Greeter where=remote' in failure.hint
    assert out == '1\n'
    assert [c.status for c in engine.containers.values()] == ['running']


@pytest.mark.parametrize('on_interrupt, left', [('stop', []), ('detach', ['running'])])
def test_ctrl_c_while_watching(engine, client, on_interrupt, left):
    engine.program(IMAGE, stdout=b'1\n2\n', break_stream=(1, KeyboardInterrupt()))
    err = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_container(client, spec(), silent=True, err=err, on_interrupt=on_interrupt)
    assert [c.status for c in engine.containers.values()] == left
    assert ('keeps running' if left else 'stopping container') in err.getvalue()


# -- lifecycle: the state lives on the engine, as labels ------------------------------------------------

def detached(client, **kwargs):
    return run_container(client, spec(**kwargs), detach=True, silent=True)['run_id']


def test_status_lists_running_and_collected_runs(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'hi\n', files={'result.pkl': pickle.dumps(7)})
    logs = tmp_path / 'runs'
    collected = run_container(client, spec(), silent=True, log_dir=logs)['run_id']
    running = detached(client)
    out = io.StringIO()
    rows = lifecycle.status(client, 'Greeter', logs, 'local', out=out)
    states = {r['run_id']: r['state'] for r in rows}
    assert states == {collected: 'collected, exited 0', running: 'running'}
    assert out.getvalue().startswith('# job Greeter on local: 2 run(s)')
    with pytest.raises(PipelineError, match='no run 20990101-000000-abcdef of job Greeter on local'):
        lifecycle.status(client, 'Greeter', logs, 'local', run_id='20990101-000000-abcdef', out=out)


def test_swarm_task_containers_are_not_runs(engine, client):
    engine.program(IMAGE)
    client.containers.create(IMAGE, labels={'tg_pipeline.job': 'Greeter', 'tg_pipeline.run_id': 'r1',
                                            'com.docker.swarm.task.id': 'task'})
    client.containers.create(IMAGE, labels={'tg_pipeline.job': 'Greeter', 'tg_pipeline.run_id': 'r2'})
    assert list(lifecycle.containers(client, 'Greeter')) == ['r2']
    assert lifecycle.containers(client, 'Other') == {}


def test_result_of_a_detached_run(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'hi\n', files={'result.pkl': pickle.dumps({'sum': 45})})
    logs = tmp_path / 'runs'
    run_id = detached(client)
    with pytest.raises(PipelineError, match='is still running on local') as early:
        lifecycle.result(client, 'Greeter', logs, 'local')
    assert f'run_id={run_id} follow=1' in early.value.hint
    engine.finish()  # time passes: the job ends
    result = lifecycle.result(client, 'Greeter', logs, 'local')
    assert result['value'] == {'sum': 45} and result['run_id'] == run_id
    assert engine.containers == {}  # collected and removed
    assert (logs / f'{run_id}.out').read_bytes() == b'hi\n'
    again = lifecycle.result(client, 'Greeter', logs, 'local', run_id=run_id)  # from what was collected
    assert again['value'] == {'sum': 45}


def test_result_of_a_failed_detached_run_raises_its_traceback(engine, client, tmp_path):
    engine.program(IMAGE, stderr=TRACE.encode(), exit_code=1, files={'traceback.txt': TRACE})
    run_id = detached(client)
    engine.finish()
    with pytest.raises(JobFailed) as info:
        lifecycle.result(client, 'Greeter', tmp_path / 'runs', 'local')
    assert info.value.remote_traceback == TRACE and info.value.exit_code == 1
    with pytest.raises(JobFailed) as saved:  # the same from the collected record
        lifecycle.result(client, 'Greeter', tmp_path / 'runs', 'local', run_id=run_id)
    assert saved.value.remote_traceback == TRACE


def test_stop_a_run_that_runs_until_stopped(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'tick\n', run_until_stopped=True)
    logs = tmp_path / 'runs'
    run_id = detached(client)
    out = io.StringIO()
    stopped = lifecycle.stop(client, 'Greeter', logs, 'local', timeout=3, out=out)
    assert stopped == {'run_id': run_id, 'exit_code': 143}
    assert engine.last('POST', '/containers/*/stop').params == {'t': '3'}
    assert f'Stopped run {run_id} of job Greeter on local (exit code 143)' in out.getvalue()
    assert engine.containers == {} and (logs / f'{run_id}.out').read_bytes() == b'tick\n'
    with pytest.raises(PipelineError, match='job Greeter has no running run on local'):
        lifecycle.stop(client, 'Greeter', logs, 'local', out=out)


def test_logs_follow_reattaches_and_collects(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'line 1\nline 2\n', files={'result.pkl': pickle.dumps('done')})
    logs = tmp_path / 'runs'
    run_id = detached(client)
    out = io.StringIO()
    result = lifecycle.print_logs(client, 'Greeter', logs, 'local', run_id=run_id, follow=True, out=out)
    assert result['value'] == 'done' and 'line 1\nline 2\n' in out.getvalue()
    assert engine.containers == {}
    plain = io.StringIO()
    lifecycle.print_logs(client, 'Greeter', logs, 'local', run_id=run_id, out=plain)
    assert f'saved in {logs}' in plain.getvalue() and 'line 2' in plain.getvalue()


def test_cleanup_removes_old_ended_runs_only(engine, client, tmp_path):
    moment = [datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)]
    engine.clock = lambda: moment[0]
    engine.program(IMAGE, stdout=b'old\n', files={'result.pkl': pickle.dumps(1)})
    engine.program('tgtest-forever:1', run_until_stopped=True)
    ended = detached(client)
    engine.finish()  # ended in 2020: long ago for the real clock
    running = detached(client, image='tgtest-forever:1')
    out = io.StringIO()
    removed = lifecycle.cleanup(client, 1, lambda job: tmp_path / job, 'local', out=out)
    assert removed == [ended]
    assert [c.labels['tg_pipeline.run_id'] for c in engine.containers.values()] == [running]
    assert (tmp_path / 'Greeter' / f'{ended}.out').read_bytes() == b'old\n'
    assert '1 ended run(s) older than 1 day(s) removed from local' in out.getvalue()
