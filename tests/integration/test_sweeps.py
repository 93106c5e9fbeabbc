"""Sweeps on every host: the same 4-variant sweep gives its table of results by variant with run_local, run_remote
and run_swarm; on one host each variant is its own container, run folder and record, at most max_concurrent at once;
status, logs, stop and result take the sweep or one variant (variant=N); a detached sweep's queue goes on in a
process of its own here; Ctrl-C stops all or detaches all; fail_fast=1 stops the others at the first failure.

The test remote is also a worker of the local swarm: its engine runs the sweep's containers as plain containers
(no service), which is what a box that is no swarm node runs too (asserted: no service is made).
"""
import json
import re
import signal

import pytest

from conftest import wait_for
from .conftest import HOLD, release
from .test_gpus import Output, cleanup, gpu_copy

pytestmark = pytest.mark.remote
TABLE = [f"  variant {seed} (seed={seed}): complete, exit 0, result {{'seed': {seed}, 'gpus': ''}}" for seed in range(4)]


@pytest.fixture
def sweeps(tmp_path, target, docker_client, remote_docker):
    project = gpu_copy(tmp_path, target)
    yield project
    for client in (docker_client, remote_docker):
        cleanup(client, project)


def engine(where, docker_client, remote_docker):
    return docker_client if where == 'local' else remote_docker


def containers(client, project, job='Sweep', **filters):
    return client.containers.list(all=True, filters={'label': [f'tg_pipeline.project={project.id}',
                                                               f'tg_pipeline.job={job}'], **filters})


def sweep_id(output: str) -> str:
    return re.search(r'(?:Sweep|Swarm) run (\S+): results by variant', output).group(1)


@pytest.mark.parametrize('where', ['local', 'remote', 'swarm'])
def test_the_same_sweep_gives_its_results_table_on_every_host(sweeps, where, docker_client, remote_docker, swarm):
    result = sweeps.doit(f'run_{where}', 'job=Sweep')
    for line in TABLE:
        assert line in result.stdout, result.stdout
    run_id = sweep_id(result.stdout)
    for seed in range(4):
        assert f'[variant {seed}] seed {seed} on GPUs []' in result.stdout  # streamed live, by variant
        assert sweeps.path(f'build/Sweep/runs/{where}/{run_id}/variant_{seed}').is_dir()
    record = json.loads(sweeps.read(f'build/Sweep/runs/{where}/{run_id}.json'))
    assert [(v['variant'], v['state'], v['exit_code']) for v in record['variants']] == [
        (i, 'complete', 0) for i in range(4)]
    assert containers(docker_client, sweeps) == [] and containers(remote_docker, sweeps) == []
    if where != 'swarm':  # each variant its own container, run folder and record; no service anywhere
        assert re.search(rf'Started sweep run {run_id} \(\S+( \S+)?\): 4 variants, each in its own container, at '
                         rf'most \d at a time', result.stdout), result.stdout
        for seed in range(4):
            variant = json.loads(sweeps.read(f'build/Sweep/runs/{where}/{run_id}/variant_{seed}.json'))
            assert (variant['run_id'], variant['variant'], variant['exit_code']) == (run_id, seed, 0)
            assert f'seed {seed} on GPUs' in sweeps.read(f'build/Sweep/runs/{where}/{run_id}/variant_{seed}.out')
        assert docker_client.services.list(filters={'label': f'tg_pipeline.run_id={run_id}'}) == []
    again = sweeps.doit('result', 'job=Sweep', f'where={where}')
    assert TABLE[3] in again.stdout
    one = sweeps.doit('result', 'job=Sweep', f'where={where}', 'variant=2')
    assert "Result: {'seed': 2, 'gpus': ''}" in one.stdout
    logs = sweeps.doit('logs', 'job=Sweep', f'where={where}', 'variant=1')
    assert 'seed 1 on GPUs []' in logs.stdout and 'seed 2 on' not in logs.stdout


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_a_detached_sweep_goes_on_from_a_process_of_its_own_and_stops_as_one(sweeps, where, docker_client,
                                                                             remote_docker):
    client = engine(where, docker_client, remote_docker)
    started = sweeps.doit(f'run_{where}', 'job=Sweep', 'max_concurrent=1', 'detach=1', HOLD)
    run_id = re.search(r'Started sweep run (\S+) .*: 4 variants, each in its own container, at most 1 at a time',
                       started.stdout).group(1)
    assert 'the variants still queued start from a process of its own here (pid ' in started.stderr
    first = wait_for(lambda: containers(client, sweeps, status='running'), what='variant 0 running')
    status = sweeps.doit('status', 'job=Sweep', f'where={where}')
    assert re.search(rf'^{run_id}  4 variants: 1 running, 3 queued ', status.stdout, re.M), status.stdout
    assert release(*first) == 1  # variant 0 ends; the keeper starts variant 1
    second = wait_for(lambda: [c for c in containers(client, sweeps, status='running')
                               if c.labels['tg_pipeline.variant'] == '1'], timeout=120, what='variant 1 running')
    table = sweeps.doit('status', 'job=Sweep', f'where={where}', f'run_id={run_id}')
    assert re.search(r'^0 +seed=0 +exited 0 ', table.stdout, re.M), table.stdout
    assert re.search(r'^1 +seed=1 +running ', table.stdout, re.M) and re.search(r'^3 +seed=3 +queued', table.stdout,
                                                                               re.M)
    one = sweeps.doit('logs', 'job=Sweep', f'where={where}', 'variant=1')
    assert f'# variant 1 (seed=1) of sweep run {run_id}' in one.stdout and 'seed 1 on GPUs []' in one.stdout
    stopped = sweeps.doit('stop', 'job=Sweep', f'where={where}')
    assert f'Stopped run {run_id} of job Sweep' in stopped.stdout and '(1/4 variants succeeded)' in stopped.stdout
    assert containers(client, sweeps) == [] and second
    record = json.loads(sweeps.read(f'build/Sweep/runs/{where}/{run_id}.json'))
    assert [v['state'] for v in record['variants']] == ['complete', 'stopped', 'not started', 'not started']
    keeper = sweeps.read(f'build/Sweep/runs/{where}/{run_id}/keeper.log')
    assert f'Keeping sweep run {run_id} going' in keeper
    wait_for(lambda: 'has started (or the sweep was stopped)' in sweeps.read(
        f'build/Sweep/runs/{where}/{run_id}/keeper.log'), what='the keeper to end')


def test_ctrl_c_stops_every_variant_or_detaches_them_all(sweeps, docker_client):
    sweeps.doit('build_image', 'job=Sweep')
    run = Output(sweeps.popen('run_local', 'job=Sweep', 'max_concurrent=2', HOLD))
    wait_for(lambda: len(containers(docker_client, sweeps, status='running')) == 2, what='two variants running')
    wait_for(lambda: run.text().count('held until') == 2, what='doit to follow both')
    run.process.send_signal(signal.SIGINT)
    assert run.wait() != 0
    assert 'Interrupted: stopping container' in run.text('err') and 'Traceback' not in run.text('err')
    assert containers(docker_client, sweeps) == []
    detached = Output(sweeps.popen('run_local', 'job=Sweep', 'max_concurrent=2', 'on_interrupt=detach', HOLD))
    wait_for(lambda: len(containers(docker_client, sweeps, status='running')) == 2, what='two variants running')
    detached.process.send_signal(signal.SIGINT)
    assert detached.wait() != 0
    run_id = re.search(r'Interrupted: run (\S+) keeps running', detached.text('err')).group(1)
    assert 'the variants still queued start from a process of its own here' in detached.text('err')
    released = set()
    while len(released) < 4:  # two at a time: the keeper starts the last two as the first two end
        fresh = wait_for(lambda: [c for c in containers(docker_client, sweeps, status='running')
                                  if c.id not in released], timeout=120, what='variants running')
        release(*fresh)
        released.update(c.id for c in fresh)
    followed = sweeps.doit('logs', 'job=Sweep', f'run_id={run_id}', 'follow=1')
    for line in TABLE:
        assert line in followed.stdout, followed.stdout


def test_a_failed_variant_stops_the_others_only_with_fail_fast(sweeps, docker_client):
    failed = sweeps.doit('run_local', 'job=SweepFail', check=False)
    assert failed.returncode != 0
    assert re.search(r'ERROR: 1 variant\(s\) of job SweepFail failed in sweep run \S+ \(local\): variant 1 '
                     r'\(seed=1\): failed exit 1', failed.stderr), failed.stderr
    assert 'ValueError: seed 1 diverged' in failed.stderr
    run_id = re.search(r'failed in sweep run (\S+)', failed.stderr).group(1)
    states = [v['state'] for v in json.loads(sweeps.read(f'build/SweepFail/runs/local/{run_id}.json'))['variants']]
    assert states == ['complete', 'failed', 'complete', 'complete']
    fast = sweeps.doit('run_local', 'job=SweepFail', 'fail_fast=1', check=False)
    assert 'Variant 1 of sweep run' in fast.stderr and 'fail_fast is on: stopping the others' in fast.stderr
    assert re.search(r'failed in sweep run \S+ \(local\): variant 1 \(seed=1\): failed exit 1, variant 2 \(seed=2\): '
                     r'not started \(the sweep was stopped before it started\), variant 3', fast.stderr), fast.stderr
    assert containers(docker_client, sweeps, job='SweepFail') == []


def test_the_python_api_runs_a_list_of_jobs_as_a_sweep_on_one_host(tmp_path, docker_client):
    from tg_pipeline import LocalExecutor
    from unit.test_api import config_for, job_package
    name, _ = job_package(tmp_path, '''
        class Power:
            def __init__(self, base, exponent):
                self.base, self.exponent = base, exponent
            def run(self):
                print('computing', self.base, '**', self.exponent, flush=True)
                return self.base ** self.exponent
        ''')
    module = __import__(f'{name}.jobs', fromlist=['Power'])
    variants = {f'2^{e}': module.Power(2, e) for e in range(3)}
    config = config_for(variants['2^0'], 'powersweep', tmp_path, max_concurrent=2)
    executor = LocalExecutor(config, variants)
    assert executor.execute() == {'2^0': 1, '2^1': 2, '2^2': 4}
    assert executor.result() == {'2^0': 1, '2^1': 2, '2^2': 4}  # the last run, collected here
    assert docker_client.containers.list(all=True, filters={'label': 'tg_pipeline.job=powersweep'}) == []
