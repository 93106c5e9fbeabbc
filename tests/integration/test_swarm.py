"""run_swarm on a real swarm: the local engine is the manager and the test remote's engine a worker
(scripts/setup_swarm.sh). All variants ship in one image; each task picks its own by its slot."""
import json
import re

from target import TARGET

from .conftest import HOLD, release_when_running


def left_behind(client, job, project=None):
    """The job's services (asked of a manager) and containers (of any engine) still there (of the test's
    project, when given: the engines are shared)."""
    labels = project.labels(job) if project else [f'tg_pipeline.job={job}']
    manager = client.info()['Swarm'].get('ControlAvailable')
    services = client.services.list(filters={'label': labels}) if manager else []
    containers = client.containers.list(all=True, filters={'label': labels})
    return services + containers


def record(project, job, run_id):
    return json.loads(project.read(f'build/{job}/runs/swarm/{run_id}.json'))


def test_sweep_of_four_variants_brings_every_result_back(project, docker_client, remote_docker, swarm):  # noqa: F811
    result = project.doit('run_swarm', 'job=Sweep')
    run_id = re.search(r'Started swarm run (\S+)', result.stdout).group(1)
    for index, (rate, width) in enumerate([(1, 10), (1, 20), (2, 10), (2, 20)]):
        assert (f"  variant {index} (rate={rate},width={width}): complete, exit 0, result "
                f"{{'rate': {rate}, 'width': {width}, 'score': {rate * width}}}") in result.stdout
        folder = project.path(f'build/Sweep/runs/swarm/{run_id}/variant_{index}')
        assert (folder / 'output' / 'score.txt').read_text() == str(rate * width)
        assert f'[variant {index}] training {rate} {width}' in result.stdout  # streamed live, by variant
    assert re.search(r'Started swarm run \S+ \(swarm local\): 4 task\(s\), at most 4 at a time', result.stdout)
    nodes = {v['node'] for v in record(project, 'Sweep', run_id)['variants']}
    assert len(nodes) == 2  # spread over the manager and the worker
    assert left_behind(docker_client, 'Sweep', project) == [] and left_behind(remote_docker, 'Sweep', project) == []
    again = project.doit('result', 'job=Sweep', 'where=swarm')
    assert "variant 3 (rate=2,width=20): complete, exit 0, result {'rate': 2, 'width': 20, 'score': 40}" \
        in again.stdout


def test_a_failing_variant_fails_the_run_and_is_named(project, docker_client, swarm):
    result = project.doit('run_swarm', 'job=SweepFail', check=False)
    assert result.returncode != 0
    assert 'ERROR: 1 variant(s) of job SweepFail failed in swarm run' in result.stderr
    assert 'variant 2 (rate=2,width=10): failed exit 1' in result.stderr
    assert 'ValueError: diverged at rate=2 width=10' in result.stderr
    assert left_behind(docker_client, 'SweepFail', project) == []
    run_id = re.search(r'Started swarm run (\S+)', result.stdout).group(1)
    states = [(v['variant'], v['state']) for v in record(project, 'SweepFail', run_id)['variants']]
    assert states == [(0, 'complete'), (1, 'complete'), (2, 'failed'), (3, 'complete')]


def test_reservation_larger_than_any_node_is_refused_at_once(project, docker_client, swarm):
    result = project.doit('run_swarm', 'job=Sweep', 'reserve_memory=10000', check=False, timeout=120)
    assert result.returncode != 0
    assert 'ERROR: the tasks cannot be scheduled: each reserves 0 CPU and 10000 GB' in result.stderr
    assert 'TIP: lower cpu_reservation / memory_reservation_gb' in result.stderr
    assert left_behind(docker_client, 'Sweep', project) == []


def test_unsatisfiable_constraint_times_out_with_a_clear_error(project, docker_client, swarm):
    result = project.doit('run_swarm', 'job=Sweep', 'swarm.constraints=node.labels.tg_nothing==yes',
                          check=False, timeout=120)
    assert result.returncode != 0
    assert 'cannot be scheduled on swarm local: no suitable node' in result.stderr
    assert '(waited 5 s); the service was removed' in result.stderr
    assert left_behind(docker_client, 'Sweep', project) == []


def test_detached_swarm_run_status_logs_stop(project, docker_client, remote_docker, swarm):
    started = project.doit('run_swarm', 'job=SlowSweep', 'detach=1', HOLD)  # its tasks run until released
    run_id = re.search(r'Started swarm run (\S+)', started.stdout).group(1)
    service, = docker_client.services.list(filters={'label': f'tg_pipeline.run_id={run_id}'})
    assert service.attrs['Spec']['Labels']['team'] == 'tests'  # [swarm] labels, on the service
    assert service.attrs['Spec']['TaskTemplate']['ContainerSpec']['Labels']['team'] == 'tests'  # and its containers
    assert service.attrs['Spec']['Mode'] == {'ReplicatedJob': {'MaxConcurrent': 2, 'TotalCompletions': 2}}
    status = project.doit('status', 'job=SlowSweep', 'where=swarm')
    assert re.search(rf'{run_id}  \d+ (running|starting|preparing|assigned|pending)', status.stdout), status.stdout
    release_when_running(project, 'SlowSweep', docker_client, remote_docker, count=2)  # a task on either node
    followed = project.doit('logs', 'job=SlowSweep', 'where=swarm', f'run_id={run_id}', 'follow=1')
    assert "variant 1 (rate=2,width=10): complete, exit 0, result {'rate': 2, 'width': 10, 'score': 20}" \
        in followed.stdout
    status = project.doit('status', 'job=SlowSweep', 'where=swarm', f'run_id={run_id}')
    assert f'{run_id}  collected, 2/2 variants succeeded' in status.stdout
    second = re.search(r'Started swarm run (\S+)',
                       project.doit('run_swarm', 'job=SlowSweep', 'detach=1', HOLD).stdout).group(1)
    stopped = project.doit('stop', 'job=SlowSweep', 'where=swarm', f'run_id={second}')
    assert f'Stopped swarm run {second} of job SlowSweep' in stopped.stdout
    assert left_behind(docker_client, 'SlowSweep', project) == []


def test_swarm_executor_runs_a_python_list_of_jobs(tmp_path, docker_client, remote_docker, swarm):  # noqa: F811
    from tg_pipeline import SwarmExecutor
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
    config = config_for(variants['2^0'], 'power', tmp_path)
    config.containering.registry = TARGET.registry
    config.host = TARGET.remote  # the worker node: its exited task containers are cleared too (moby#44312)
    executor = SwarmExecutor(config, variants, max_concurrent=2)
    assert executor.execute() == {'2^0': 1, '2^1': 2, '2^2': 4}
    assert executor.result() == {'2^0': 1, '2^1': 2, '2^2': 4}  # the last run, collected here
    assert left_behind(docker_client, 'power') == []
    assert left_behind(remote_docker, 'power') == []
