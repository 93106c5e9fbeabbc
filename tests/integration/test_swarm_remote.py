"""run_swarm as its users run it: the manager is a head node reached over SSH (``[swarm] manager = "remote"``,
``[remote] host`` the test target's swarm head, tests/target.py) and this machine is no node of that swarm
(scripts/setup_swarm_remote.sh): the head's engine is the manager, a worker engine beside it advertises one GPU (a
generic resource). Images
are pushed from here and pulled by the nodes; logs and results come back through the manager over SSH."""
import json
import re

import pytest

from conftest import copy_project, need, wait_for
from target import TARGET

from .conftest import HOLD

pytestmark = pytest.mark.remote

GPU_JOB = '''"""Reports the GPU the swarm gave this task (generic resources arrive as DOCKER_RESOURCE_* variables)."""
import os
import time


class GpuProbe:
    def __init__(self, index, seconds=0):
        self.index, self.seconds = index, seconds

    def run(self):
        given = {k: v for k, v in os.environ.items() if k.startswith('DOCKER_RESOURCE_')}
        print('GPU', self.index, given, flush=True)
        time.sleep(self.seconds)
        return given
'''
GPU_TABLES = '''
[jobs.GpuSweep]
factory = "jobs.gpu_probe:GpuProbe"
gpus = 1
kwargs = { seconds = 3 }

[jobs.GpuSweep.sweep]
index = [0, 1, 2]
'''


@pytest.fixture(scope='session')
def head(docker_client):
    """The head's destination (``alias``) and how messages name it (``where``), the GPU's generic resource, its
    engine and the worker's (through their sockets, for the assertions only): the test target's (tests/target.py)."""
    import docker
    try:
        manager = docker.DockerClient(base_url=TARGET.swarm_head_docker)
        worker = docker.DockerClient(base_url=TARGET.swarm_worker_docker)
        ready = [n for n in manager.nodes.list() if n.attrs['Status']['State'] == 'ready']
        problem = None if len(ready) == 2 else f'{len(ready)} ready node(s) on the head'
        where = TARGET.head_login().where
    except Exception as e:  # anything: the reason goes into the message
        problem = f'{type(e).__name__}: {e}'
    need(problem, f'the swarm with a head node {TARGET.swarm_head}',
         'scripts/setup_swarm_remote.sh (or set TG_TEST_SWARM_HEAD and its _DOCKER variables)')
    return dict(alias=TARGET.swarm_head, where=where, gpu_resource=TARGET.swarm_gpu_resource, manager=manager,
                worker=worker, head_node=manager.info()['Swarm']['NodeID'],
                worker_node=worker.info()['Swarm']['NodeID'])


def headed(project, head):
    """The fixture project pointed at the head node, with a job that asks for one GPU."""
    project.edit('pipeline.toml', f'host = "{TARGET.remote}"', f'host = "{head["alias"]}"')
    project.edit('pipeline.toml', '[swarm]\n', f'[swarm]\nmanager = "remote"\n'
                                               f'gpu_resource = "{head["gpu_resource"]}"\n')
    project.write('jobs/gpu_probe.py', GPU_JOB)
    project.write('pipeline.toml', project.read('pipeline.toml') + GPU_TABLES)
    return project


@pytest.fixture
def swarm_project(tmp_path, head):
    project = headed(copy_project('basic', tmp_path), head)
    yield project
    # the worker keeps the exited containers of removed replicated-job services (moby#44312) and this machine
    # does not reach it: the test clears its own project's
    for item in head['worker'].containers.list(all=True, filters={'label': f'tg_pipeline.project={project.id}'}):
        item.remove(force=True)


def services(head, project, job=None):
    labels = project.labels(job) if job else [f'tg_pipeline.project={project.id}']
    return head['manager'].services.list(filters={'label': labels})


def running(client, project):
    return client.containers.list(filters={'label': f'tg_pipeline.project={project.id}'})


def record(project, job, run_id):
    return json.loads(project.read(f'build/{job}/runs/swarm/{run_id}.json'))


def run_id_of(output):
    return re.search(r'Started swarm run (\S+)', output).group(1)


def forget_images(head, name):
    """Nodes without the image: the run must pull it from the registry on each."""
    for engine in (head['manager'], head['worker']):
        for image in engine.images.list():
            if any(name in ref for ref in image.attrs.get('RepoDigests', []) + image.tags):
                engine.images.remove(image.id, force=True)


def test_a_sweep_runs_through_the_head_node_on_both_nodes(swarm_project, head, docker_client):
    forget_images(head, 'tgtest-sweep')
    result = swarm_project.doit('run_swarm', 'job=Sweep')
    run_id = run_id_of(result.stdout)
    assert re.search(rf'Started swarm run \S+ \(swarm {re.escape(head["where"])}\): 4 task\(s\)', result.stdout)
    for index, (rate, width) in enumerate([(1, 10), (1, 20), (2, 10), (2, 20)]):
        assert (f"  variant {index} (rate={rate},width={width}): complete, exit 0, result "
                f"{{'rate': {rate}, 'width': {width}, 'score': {rate * width}}}") in result.stdout
        assert f'[variant {index}] training {rate} {width}' in result.stdout  # the log, live, over SSH
        folder = swarm_project.path(f'build/Sweep/runs/swarm/{run_id}/variant_{index}')
        assert (folder / 'output' / 'score.txt').read_text() == str(rate * width)
    nodes = {v['node'] for v in record(swarm_project, 'Sweep', run_id)['variants']}
    assert nodes == {head['head_node'], head['worker_node']}  # spread over the head and the worker
    assert services(head, swarm_project) == [] and head['manager'].containers.list(
        all=True, filters={'label': f'tg_pipeline.project={swarm_project.id}'}) == []
    assert running(head['worker'], swarm_project) == []
    assert docker_client.containers.list(all=True, filters={'label': swarm_project.labels('Sweep')}) == []


def test_gpu_tasks_run_only_where_a_gpu_is_and_queue_for_it(swarm_project, head):
    result = swarm_project.doit('run_swarm', 'job=GpuSweep')  # 3 tasks of 3 s, one GPU: longer than the 5 s
    run_id = run_id_of(result.stdout)                          # schedule_timeout, yet queued, not refused
    gpu = f'DOCKER_RESOURCE_{head["gpu_resource"]}'
    for index in range(3):
        assert f"  variant {index} (index={index}): complete, exit 0, result {{'{gpu}': 'GPU-0'}}" in result.stdout
    variants = record(swarm_project, 'GpuSweep', run_id)['variants']
    assert [v['node'] for v in variants] == [head['worker_node']] * 3  # the head advertises no GPU


def test_gpus_no_node_has_are_refused_before_a_service_exists(swarm_project, head):
    failed = swarm_project.doit('run_swarm', 'job=GpuSweep', 'gpus=2', check=False)
    assert failed.returncode != 0
    assert failed.stderr.count('ERROR:') == 1 and failed.stderr.count('TIP:') == 1, failed.stderr
    assert (f'ERROR: the tasks cannot be scheduled: each reserves 2 GPU(s) (generic resource '
            f'"{head["gpu_resource"]}"), and no ready node of the swarm on swarm {head["where"]}') in failed.stderr
    assert 'advertises that many (2 ready, the most: 1)' in failed.stderr
    assert 'Traceback' not in failed.stderr + failed.stdout
    assert services(head, swarm_project) == []


def test_status_logs_stop_result_cleanup_through_the_head_node(swarm_project, head, docker_client):
    started = swarm_project.doit('run_swarm', 'job=GpuSweep', 'detach=1')
    run_id = run_id_of(started.stdout)
    service, = services(head, swarm_project, 'GpuSweep')  # on the head, not on this machine's swarm
    reserved = service.attrs['Spec']['TaskTemplate']['Resources']['Reservations']['GenericResources']
    assert reserved == [{'DiscreteResourceSpec': {'Kind': head['gpu_resource'], 'Value': 1}}]
    assert docker_client.services.list(filters={'label': swarm_project.labels('GpuSweep')}) == []
    status = swarm_project.doit('status', 'job=GpuSweep', 'where=swarm')
    assert re.search(rf'{run_id}  \d+ \w+', status.stdout), status.stdout
    wait_for(lambda: 'GPU 0' in swarm_project.doit('logs', 'job=GpuSweep', 'where=swarm').stdout, 60, 'the log')
    followed = swarm_project.doit('logs', 'job=GpuSweep', 'where=swarm', f'run_id={run_id}', 'follow=1')
    assert 'variant 2 (index=2): complete, exit 0' in followed.stdout
    status = swarm_project.doit('status', 'job=GpuSweep', 'where=swarm', f'run_id={run_id}')
    assert f'{run_id}  collected, 3/3 variants succeeded' in status.stdout

    second = run_id_of(swarm_project.doit('run_swarm', 'job=SlowSweep', 'detach=1', HOLD).stdout)
    stopped = swarm_project.doit('stop', 'job=SlowSweep', 'where=swarm', f'run_id={second}')
    assert re.search(rf'Stopped swarm run {second} of job SlowSweep on swarm \S+ \(\d/2 variants succeeded\)',
                     stopped.stdout), stopped.stdout
    assert services(head, swarm_project, 'SlowSweep') == []

    third = run_id_of(swarm_project.doit('run_swarm', 'job=Sweep', 'detach=1').stdout)
    fourth = run_id_of(swarm_project.doit('run_swarm', 'job=Sweep', 'detach=1').stdout)
    wait_for(lambda: 'collected' not in (s := swarm_project.doit('status', 'job=Sweep', 'where=swarm').stdout)
             and s.count('4 complete') == 2, 90, 'both Sweep runs to end')
    result = swarm_project.doit('result', 'job=Sweep', 'where=swarm', f'run_id={third}')
    assert "variant 3 (rate=2,width=20): complete, exit 0, result {'rate': 2, 'width': 20, 'score': 40}" \
        in result.stdout
    cleaned = swarm_project.doit('cleanup', 'where=swarm', 'days=0')
    assert f'removed run {fourth} of job Sweep' in cleaned.stdout and third not in cleaned.stdout
    assert services(head, swarm_project) == []
    assert record(swarm_project, 'Sweep', fourth)['variants'][3]['state'] == 'complete'  # collected first


def test_nothing_acts_on_another_projects_swarm_runs(swarm_project, head, tmp_path):
    other = headed(copy_project('basic', tmp_path / 'other'), head)
    try:
        theirs = run_id_of(other.doit('run_swarm', 'job=SlowSweep', 'detach=1', HOLD).stdout)  # until stopped
        assert theirs not in swarm_project.doit('status', 'job=SlowSweep', 'where=swarm').stdout
        assert theirs in swarm_project.doit('status', 'job=SlowSweep', 'where=swarm', 'all_projects=1').stdout
        swarm_project.doit('cleanup', 'where=swarm', 'days=0')
        refused = swarm_project.doit('stop', 'job=SlowSweep', 'where=swarm', f'run_id={theirs}', check=False)
        assert refused.returncode != 0
        assert f'ERROR: swarm run {theirs} belongs to project {other.id} of ' in refused.stderr
        assert [s.attrs['Spec']['Labels']['tg_pipeline.run_id'] for s in services(head, other)] == [theirs]
        stopped = other.doit('stop', 'job=SlowSweep', 'where=swarm')  # its own project stops it
        assert f'Stopped swarm run {theirs} of job SlowSweep' in stopped.stdout
        assert services(head, other) == []
    finally:
        for service in services(head, other):
            service.remove()
        for item in head['worker'].containers.list(all=True, filters={'label': f'tg_pipeline.project={other.id}'}):
            item.remove(force=True)
