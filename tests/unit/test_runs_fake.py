"""Runs over the fake engine, through the public functions: ``runs.container.run_container`` and
``runs.lifecycle`` (status, result, stop, logs follow, cleanup) over a ContainerBackend. Behaviour only:
what the job's owner sees and what is left on the engine."""
import datetime
import io
import json
import pickle

import docker
import pytest

from fakes.runs import IMAGE, MISSING_ID, TRACE, local_backend, make_spec, run
from tg_pipeline.config.schema import RunSettings
from tg_pipeline.errors import JobFailed, PipelineError, RemoteError
from tg_pipeline.console import Console
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.model import RunHandle, RunResult
from tg_pipeline.runs.container import container_name
from tg_pipeline.runs.lifecycle import run_container
from tg_pipeline.runs.lifecycle import Scope


@pytest.fixture
def paths(tmp_path):
    return RunPaths(tmp_path / 'local')


def test_success_brings_back_the_value_output_and_logs(engine, client, paths):
    engine.program(IMAGE, stdout=b'Welcome\nSUCCESS\n', stderr=b'a warning\n',
                   files={'result.pkl': pickle.dumps({'sum': 45}), 'output/table.csv': b'a,b\n'})
    result, out, err = run(client, make_spec(engine), paths)
    assert isinstance(result, RunResult)
    assert result.value == {'sum': 45} and result.exit_code == 0 and result.where == 'local' and result.ok
    assert out == 'Welcome\nSUCCESS\n' and err == 'a warning\n'
    run_id = result.run_id
    assert paths.out(run_id).read_bytes() == b'Welcome\nSUCCESS\n'
    assert paths.err(run_id).read_bytes() == b'a warning\n'
    assert (paths.run_dir(run_id) / 'output' / 'table.csv').read_text() == 'a,b\n'
    record = json.loads(paths.record(run_id).read_text())
    assert record['exit_code'] == 0 and record['oom_killed'] is False and record['job'] == 'Greeter'
    assert engine.containers == {}  # removed afterwards
    assert [c.labels['tg_pipeline.run_id'] for c in engine.removed] == [run_id]


def test_silent_run_prints_nothing_and_without_paths_keeps_no_value(engine, client):
    engine.program(IMAGE, stdout=b'hello\n', files={'result.pkl': pickle.dumps(1)})
    result, out, err = run(client, make_spec(engine), quiet=True)
    assert (out, err) == ('', '')
    assert result.output == 'hello\n' and result.value is None and result.run_dir is None
    assert engine.containers == {}


def test_failing_job_raises_with_exit_code_and_traceback(engine, client, paths):
    engine.program(IMAGE, stdout=b'Welcome\n', stderr=TRACE.encode(), exit_code=1,
                   files={'traceback.txt': TRACE})
    failure, _, err = run(client, make_spec(engine), paths)
    assert isinstance(failure, JobFailed)
    assert failure.exit_code == 1 and 'job Greeter failed (local run)' in failure.message
    assert failure.remote_traceback == TRACE
    assert 'RuntimeError: boom from the fake' in failure.message  # summed up in one line ...
    assert failure.output_tail == '' and err.count('RuntimeError: boom from the fake') == 1  # ... said once
    assert failure.result.exit_code == 1 and failure.result.run_id in paths.saved_ids()
    assert engine.containers == {}


def test_failing_job_without_traceback_file_quotes_the_output(engine, client):
    """Without traceback.txt (the job died before the entry point could write one) the error quotes the
    end of what it printed; it claims no job traceback (the old API cut one out of the output)."""
    engine.program(IMAGE, stderr=TRACE.encode() + b'DONE. Exiting Training Grounds.\n', exit_code=2)
    failure, _, _ = run(client, make_spec(engine), quiet=True)
    assert failure.exit_code == 2 and failure.remote_traceback is None
    assert failure.output_tail == TRACE + 'DONE. Exiting Training Grounds.'


def test_oom_message_names_the_memory_limit(engine, client, paths):
    engine.program(IMAGE, stdout=b'allocating\n', oom=True)
    failure, _, _ = run(client, make_spec(engine, run=RunSettings(memory_gb=0.25)), paths)
    assert isinstance(failure, JobFailed) and failure.exit_code == 137
    assert 'exceeding its memory limit of 0.25 GB' in failure.message
    assert 'memory_gb' in failure.hint
    record = json.loads(next(paths.dir.glob('*.json')).read_text())
    assert record['oom_killed'] is True and record['memory_gb'] == 0.25


def test_signal_kill_is_named(engine, client):
    engine.program(IMAGE, exit_code=137)
    failure, _, _ = run(client, make_spec(engine), quiet=True)
    assert 'was killed by signal 9' in failure.message and failure.result.signal == 9


def test_env_labels_and_limits_reach_the_create_request_verbatim(engine, client):
    engine.program(IMAGE)
    tricky = 'a b; $(rm -rf /) "quoted" \'single\'\nsecond line'
    environ = {'TOKEN': tricky, 'PLAIN': 'x', 'UNLISTED': 'no'}
    spec = make_spec(engine, run=RunSettings(env=('TOKEN', 'PLAIN', 'MISSING'), cpu=1.5, memory_gb=0.5))
    result, _, _ = run(client, spec, quiet=True, environ=environ)
    create = engine.last('POST', '/containers/create')
    env = dict(e.split('=', 1) for e in create.body['Env'])
    assert env == {'TOKEN': tricky, 'PLAIN': 'x', 'TG_PIPELINE_RUN_DIR': '/tg_pipeline/run',
                   'TG_PIPELINE_RUN_ID': result.run_id}
    labels = create.body['Labels']
    assert {k: labels[k] for k in ('tg_pipeline.job', 'tg_pipeline.package', 'tg_pipeline.version',
                                   'tg_pipeline.run_id', 'tg_pipeline.where', 'tg_pipeline.module')} == {
        'tg_pipeline.job': 'Greeter', 'tg_pipeline.package': 'greeter', 'tg_pipeline.version': '0.0.1',
        'tg_pipeline.run_id': result.run_id, 'tg_pipeline.where': 'local',
        'tg_pipeline.module': 'greeter__0_0_1'}
    host = create.body['HostConfig']
    assert host['NanoCpus'] == 1_500_000_000 and host['Init'] is True
    assert host['Memory'] == host['MemorySwap'] == 512 * 1024 ** 2
    assert create.params['name'] == container_name(spec, result.run_id)
    assert create.body['Image'] == spec.image_id


@pytest.mark.parametrize('reference, named', [('', MISSING_ID), (IMAGE, IMAGE)])
def test_missing_image_is_named_and_nothing_is_created(engine, client, reference, named):
    failure, _, _ = run(client, make_spec(engine, image=None, reference=reference), quiet=True)
    assert isinstance(failure, PipelineError)
    assert failure.message == f'image {named} is not on the local Docker engine'
    assert 'build_image' in failure.hint
    assert engine.containers == {} and engine.removed == []


def test_detach_leaves_it_running_and_returns_its_handle(engine, client):
    engine.program(IMAGE, stdout=b'working\n')
    handle, out, _ = run(client, make_spec(engine), detach=True)
    assert isinstance(handle, RunHandle) and handle.running and handle.where == 'local'
    container = engine.container(handle.ref)
    assert container.status == 'running' and container.labels['tg_pipeline.run_id'] == handle.run_id
    assert container.name == handle.name
    assert f'Started run {handle.run_id} (local), container {handle.name}' in out
    assert 'doit logs job=Greeter' in out
    assert engine.find('GET', '/containers/*/logs') == [] and engine.find('POST', '/containers/*/wait') == []


def test_start_failure_is_raised(engine, client):
    engine.program(IMAGE, start_error='OCI runtime create failed: unable to start container process')
    with pytest.raises(docker.errors.APIError, match='OCI runtime'):
        run_container(client, make_spec(engine), console=Console(quiet=True))


def test_start_failure_removes_the_container(engine, client):
    engine.program(IMAGE, start_error='OCI runtime create failed: unable to start container process')
    with pytest.raises(docker.errors.APIError):
        run_container(client, make_spec(engine), console=Console(quiet=True))
    assert engine.containers == {} and len(engine.removed) == 1


def test_lost_connection_to_a_remote_engine_leaves_the_job_running(engine, client):
    engine.program(IMAGE, stdout=b'1\n2\n', break_stream=(1, ConnectionResetError('connection reset by peer')))
    failure, out, _ = run(client, make_spec(engine), where='remote gpu-box')
    assert isinstance(failure, RemoteError)
    assert 'the connection to remote gpu-box was lost' in failure.message and 'keeps running' in failure.message
    assert 'doit logs job=Greeter where=remote' in failure.hint
    assert out == '1\n'
    assert [c.status for c in engine.containers.values()] == ['running']


@pytest.mark.parametrize('on_interrupt, left', [('stop', []), ('detach', ['running'])])
def test_ctrl_c_while_watching(engine, client, on_interrupt, left):
    engine.program(IMAGE, stdout=b'1\n2\n', break_stream=(1, KeyboardInterrupt()))
    err = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_container(client, make_spec(engine), console=Console(quiet=True, err=err), on_interrupt=on_interrupt)
    assert [c.status for c in engine.containers.values()] == left
    assert ('keeps running' if left else 'stopping container') in err.getvalue()


def test_ctrl_c_stop_collects_what_the_run_left(engine, client, paths):
    engine.program(IMAGE, stdout=b'1\n2\n', break_stream=(1, KeyboardInterrupt()))
    err = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_container(client, make_spec(engine), paths=paths, console=Console(quiet=True, err=err))
    [run_id] = paths.saved_ids()
    assert engine.containers == {} and paths.out(run_id).read_bytes() == b'1\n2\n'
    assert paths.read_record(run_id)['exit_code'] == 143
    assert f'what it left is in {paths.run_dir(run_id)}' in err.getvalue()


# -- lifecycle: the state lives on the engine, as labels ------------------------------------------------

def detached(engine, client, image=IMAGE, **changes) -> str:
    return run_container(client, make_spec(engine, image, **changes), detach=True, console=Console(quiet=True)).run_id


def test_status_lists_running_and_collected_runs(engine, client, paths):
    engine.program(IMAGE, stdout=b'hi\n', files={'result.pkl': pickle.dumps(7)})
    collected = run_container(client, make_spec(engine), paths=paths, console=Console(quiet=True)).run_id
    running = detached(engine, client)
    out = io.StringIO()
    backend, scope = local_backend(client), Scope('Greeter', 'proj-a')
    rows = lifecycle.status(backend, scope, paths, console=Console(out=out))
    states = {r['run_id']: r['state'] for r in rows}
    assert states == {collected: 'collected, exited 0', running: 'running'}
    assert out.getvalue().startswith('# job Greeter on local: 2 run(s)')
    with pytest.raises(PipelineError, match='no run 20990101-000000-abcdef of job Greeter on local'):
        lifecycle.status(backend, scope, paths, run_id='20990101-000000-abcdef', console=Console(out=out))


def test_swarm_task_containers_are_not_runs(engine, client):
    engine.program(IMAGE)
    client.containers.create(IMAGE, labels={'tg_pipeline.job': 'Greeter', 'tg_pipeline.run_id': 'r1',
                                            'com.docker.swarm.task.id': 'task'})
    client.containers.create(IMAGE, labels={'tg_pipeline.job': 'Greeter', 'tg_pipeline.run_id': 'r2'})
    backend = local_backend(client)
    assert list(backend.find('Greeter')) == ['r2']
    assert backend.find('Other') == {}


def test_result_of_a_detached_run(engine, client, paths):
    engine.program(IMAGE, stdout=b'hi\n', files={'result.pkl': pickle.dumps({'sum': 45})})
    run_id = detached(engine, client)
    backend, scope = local_backend(client), Scope('Greeter', 'proj-a')
    with pytest.raises(PipelineError, match='is still running on local') as early:
        lifecycle.result(backend, scope, paths)
    assert f'run_id={run_id} follow=1' in early.value.hint
    engine.finish()  # time passes: the job ends
    result = lifecycle.result(backend, scope, paths)
    assert result.value == {'sum': 45} and result.run_id == run_id
    assert engine.containers == {}  # collected and removed
    assert paths.out(run_id).read_bytes() == b'hi\n'
    again = lifecycle.result(backend, scope, paths, run_id=run_id)  # from what was collected
    assert again.value == {'sum': 45}


def test_result_of_a_failed_detached_run_raises_its_traceback(engine, client, paths):
    engine.program(IMAGE, stderr=TRACE.encode(), exit_code=1, files={'traceback.txt': TRACE})
    run_id = detached(engine, client)
    engine.finish()
    backend, scope = local_backend(client), Scope('Greeter', 'proj-a')
    with pytest.raises(JobFailed) as info:
        lifecycle.result(backend, scope, paths)
    assert info.value.remote_traceback == TRACE and info.value.exit_code == 1
    with pytest.raises(JobFailed) as saved:  # the same from the collected record
        lifecycle.result(backend, scope, paths, run_id=run_id)
    assert saved.value.remote_traceback == TRACE and saved.value.result.run_id == run_id


def test_result_of_a_failed_detached_run_without_traceback_quotes_its_output(engine, client, paths):
    engine.program(IMAGE, stdout=b'step 1\n', stderr=b'Segmentation fault in libfoo\n', exit_code=2)
    detached(engine, client)
    engine.finish()
    with pytest.raises(JobFailed) as info:
        lifecycle.result(local_backend(client), Scope('Greeter', 'proj-a'), paths)
    assert info.value.exit_code == 2
    assert 'Segmentation fault in libfoo' in info.value.output_tail  # as an attached run's error quotes it


def test_stop_a_run_that_runs_until_stopped(engine, client, paths):
    engine.program(IMAGE, stdout=b'tick\n', run_until_stopped=True)
    run_id = detached(engine, client)
    out = io.StringIO()
    backend, scope = local_backend(client), Scope('Greeter', 'proj-a')
    stopped = lifecycle.stop(backend, scope, paths, console=Console(out=out))
    assert (stopped.run_id, stopped.exit_code) == (run_id, 143)
    assert engine.last('POST', '/containers/*/stop').params == {'t': '10'}
    assert f'Stopped run {run_id} of job Greeter on local (exit code 143)' in out.getvalue()
    assert engine.containers == {} and paths.out(run_id).read_bytes() == b'tick\n'
    with pytest.raises(PipelineError, match='job Greeter has no running run on local'):
        lifecycle.stop(backend, scope, paths, console=Console(out=out))


def test_run_ids_sort_in_the_order_runs_start(engine, client, paths):
    """The latest run is the one with the greatest id: ids made one after the other sort in that order."""
    from tg_pipeline.runs.model import new_run_id
    ids = [new_run_id() for _ in range(200)]
    assert sorted(ids) == ids and len(set(ids)) == len(ids)
    engine.program(IMAGE, run_until_stopped=True)
    first, second = detached(engine, client), detached(engine, client)
    stopped = lifecycle.stop(local_backend(client), Scope('Greeter', 'proj-a'), paths,
                             console=Console(out=io.StringIO()))
    assert stopped.run_id == second
    assert [c.labels['tg_pipeline.run_id'] for c in engine.containers.values() if c.status == 'running'] == [first]


def test_logs_follow_reattaches_and_collects(engine, client, paths):
    engine.program(IMAGE, stdout=b'line 1\nline 2\n', files={'result.pkl': pickle.dumps('done')})
    run_id = detached(engine, client)
    out = io.StringIO()
    backend, scope = local_backend(client), Scope('Greeter', 'proj-a')
    result = lifecycle.logs(backend, scope, paths, run_id=run_id, follow=True, console=Console(out=out))
    assert result.value == 'done' and 'line 1\nline 2\n' in out.getvalue()
    assert engine.containers == {}
    plain = io.StringIO()
    lifecycle.logs(backend, scope, paths, run_id=run_id, console=Console(out=plain))
    assert f'saved in {paths.dir}' in plain.getvalue() and 'line 2' in plain.getvalue()


def test_cleanup_removes_old_ended_runs_only(engine, client, tmp_path):
    moment = [datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)]
    engine.clock = lambda: moment[0]
    engine.program(IMAGE, stdout=b'old\n', files={'result.pkl': pickle.dumps(1)})
    engine.program('tgtest-forever:1', run_until_stopped=True)
    ended = detached(engine, client)
    engine.finish()  # ended in 2020: long ago for the real clock
    running = detached(engine, client, image='tgtest-forever:1')
    out = io.StringIO()
    removed = lifecycle.cleanup(local_backend(client), 'proj-a', 1, lambda job: RunPaths(tmp_path / job),
                                console=Console(out=out))
    assert removed == [ended]
    assert [c.labels['tg_pipeline.run_id'] for c in engine.containers.values()] == [running]
    assert (tmp_path / 'Greeter' / f'{ended}.out').read_bytes() == b'old\n'
    assert '1 ended run(s) older than 1 day(s) removed from local' in out.getvalue()


def test_cleanup_does_not_count_a_run_it_removed_that_the_engine_still_lists(engine, client, tmp_path):
    """The engine may list a container while its removal goes on (the remote removes it as we go on): a run
    cleanup just removed is not one of the "newer" runs that stay."""
    engine.program(IMAGE, stdout=b'old\n', files={'result.pkl': pickle.dumps(1)})
    ended = detached(engine, client)
    engine.finish()
    backend = local_backend(client)
    backend.discard = lambda handle: None  # removal not seen yet
    out = io.StringIO()
    removed = lifecycle.cleanup(backend, 'proj-a', 0, lambda job: RunPaths(tmp_path / job), console=Console(out=out))
    assert removed == [ended] and len(engine.containers) == 1
    assert out.getvalue().splitlines()[-1] == '1 ended run(s) older than 0 day(s) removed from local'
