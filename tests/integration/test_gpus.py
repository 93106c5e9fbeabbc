"""GPUs handed out on one shared host, for real: the test remote's engine has Docker's NVIDIA device driver (a
stand-in nvidia-container-runtime-hook on its dockerd's PATH) and its SSH user an nvidia-smi stand-in listing 8 GPUs
(scripts/setup_remote.sh); the engine sets NVIDIA_VISIBLE_DEVICES in each container to the ids it was given, and
the fixture project's job prints it. Several doit processes pick at once; a held run waits for the test
(``env_files=hold.env``), never for a time.
"""
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import REPO, copy_project, need, wait_for
from .conftest import HOLD, release

pytestmark = pytest.mark.remote
JOB_LABEL = 'tg_pipeline.job'


@pytest.fixture(scope='session')
def standin(target):
    """The remote's 8 stand-in GPUs, as its SSH user's nvidia-smi lists them."""
    found = subprocess.run(['ssh', '-o', 'BatchMode=yes', target.remote, 'nvidia-smi', '-L'],
                           capture_output=True, text=True, timeout=60)
    lines = [line for line in found.stdout.splitlines() if line.startswith('GPU ')]
    need(None if len(lines) == 8 else f'nvidia-smi -L there says: {found.stdout or found.stderr}',
         'stand-in GPUs on the test remote', 'scripts/setup_remote.sh')
    return lines


def gpu_copy(folder, target):
    """The gpus fixture project in ``folder`` (a project of its own), run_remote going to the test remote."""
    project = copy_project('gpus', folder)
    project.write('pipeline.toml', project.read('pipeline.toml')
                  + f'\n[remote]\nhost = "{target.remote}"\n'
                    f'\n[registry]\naddress = "{target.registry}"\n')
    return project


@pytest.fixture
def gpu_project(tmp_path, target, remote_docker, standin):
    project = gpu_copy(tmp_path, target)
    yield project
    cleanup(remote_docker, project)


def cleanup(client, project):
    """Nothing of the project's stays on the remote (a test that failed half-way)."""
    for container in client.containers.list(all=True, filters={'label': f'tg_pipeline.project={project.id}'}):
        container.remove(force=True)


def host_text(target) -> str:
    return target.login().where


def held_gpus(client) -> dict:
    """GPU id -> the running containers whose device requests hold it, whoever started them (a count N is GPUs
    0 to N-1, as Docker's NVIDIA driver gives them)."""
    held = {}
    for container in client.containers.list(ignore_removed=True):
        for request in container.attrs['HostConfig'].get('DeviceRequests') or []:
            count = request.get('Count') or 0
            ids = request.get('DeviceIDs') or [str(i) for i in range(8 if count < 0 else count)]
            for device in ids:
                held.setdefault(device, []).append(container.name)
    return held


class Output:
    """What a doit process prints, read as it comes (stdout and stderr, each in a thread)."""

    def __init__(self, process):
        self.process, self.lines = process, {'out': [], 'err': []}
        self.threads = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                        for stream, name in ((process.stdout, 'out'), (process.stderr, 'err'))]
        for thread in self.threads:
            thread.start()

    def _read(self, stream, name):
        for line in stream:
            self.lines[name].append(line)

    def text(self, name='out') -> str:
        return ''.join(self.lines[name])

    def wait(self, timeout=900) -> int:
        code = self.process.wait(timeout=timeout)
        for thread in self.threads:
            thread.join(timeout=30)
        return code


def ours(client, projects, job):
    ids = {p.id for p in projects}
    return [c for c in client.containers.list(filters={'label': f'{JOB_LABEL}={job}'}, ignore_removed=True)
            if c.labels.get('tg_pipeline.project') in ids]


def test_three_projects_sweep_at_once_on_eight_gpus_and_no_gpu_is_held_twice(tmp_path, target, remote_docker,
                                                                             standin):
    projects = [gpu_copy(tmp_path / f'user{i}', target) for i in range(3)]
    try:
        runs = [Output(p.popen('run_remote', 'job=GpuSweep', HOLD)) for p in projects]  # 3 x 4 variants x 2 GPUs
        samples, queue_seen, released = 0, False, set()
        while any(run.process.poll() is None for run in runs):
            running = [c for c in ours(remote_docker, projects, 'GpuSweep') if c.id not in released]
            held = held_gpus(remote_docker)
            samples += 1
            assert all(len(names) == 1 for names in held.values()), held  # no GPU in two containers at once
            assert all(len(c.attrs['HostConfig']['DeviceRequests'][0]['DeviceIDs']) == 2 for c in running)
            if running and not queue_seen:  # they hold until released: the others wait in the queue, and say so
                wait_for(lambda: any('Waiting for GPUs' in r.text() for r in runs), timeout=600,
                         what='a run waiting for GPUs')
                queue_seen = True
                assert all(len(names) == 1 for names in held_gpus(remote_docker).values())
            if not release(*running):
                time.sleep(0.2)  # how often the engine is sampled while nothing of ours runs
            released.update(c.id for c in running)
        codes = [run.wait() for run in runs]
        assert codes == [0, 0, 0], [run.text('err')[-3000:] for run in runs]
        for run in runs:
            out = run.text()
            for seed in range(4):
                line = re.search(rf"  variant {seed} \(seed={seed}\): complete, exit 0, GPUs (\d),(\d), result "
                                 rf"\{{'seed': {seed}, 'gpus': '(\d),(\d)'\}}", out)
                assert line, out[-3000:]
                assert line.group(1, 2) == line.group(3, 4)  # what the engine gave is what was handed out
                assert f'[variant {seed}] seed {seed} on GPUs [{line.group(1)},{line.group(2)}]' in out
        waited = next(r.text() for r in runs if 'Waiting for GPUs' in r.text())
        assert re.search(r'Waiting for GPUs: variant \d of sweep run \S+ \(job GpuSweep\) asks for gpus = "2" on '
                         r'\S+, and \d of its 8 GPUs are free.*; GPU \d,\d: run \S+ \(job GpuSweep, variant \d\) of '
                         r'project \S+ of \S+', waited), waited
        assert samples > 1
    finally:
        for project in projects:
            cleanup(remote_docker, project)


def test_a_gpu_held_by_a_plain_docker_run_is_not_handed_out(gpu_project, target, remote_docker):
    import docker
    from tg_pipeline.config.identity import default_base_image
    name = f'tg-test-foreign-gpu-{uuid.uuid4().hex[:8]}'
    image = remote_docker.images.get(default_base_image())  # loaded there by scripts/setup_remote.sh
    foreign = remote_docker.containers.run(image.id, ['sleep', '600'], name=name, detach=True, device_requests=[
        docker.types.DeviceRequest(device_ids=['3'], capabilities=[['gpu']])])  # docker run --gpus device=3
    try:
        listed = gpu_project.doit('gpus', 'where=remote')
        assert re.search(rf'^3 +NVIDIA Stand-In 16GB +0 / 16384 MiB +container {name} \(\S+\), not run by '
                         r'tg_pipeline$', listed.stdout, re.M), listed.stdout
        refused = gpu_project.doit('run_remote', 'job=OneRun', 'gpus=8', 'gpu_wait=0', check=False)
        assert refused.returncode != 0
        assert (f'ERROR: job OneRun asks for gpus = "8" on {host_text(target)}, and 7 of its 8 GPUs are free '
                f'(0,1,2,4,5,6,7); GPU 3: container {name}') in refused.stderr
        assert 'TIP: wait for them in the queue (gpu_wait=1, the default)' in refused.stderr
        assert 'Traceback' not in refused.stdout + refused.stderr
        ran = gpu_project.doit('run_remote', 'job=OneRun', 'gpus=7')
        assert 'seed 0 on GPUs [0,1,2,4,5,6,7]' in ran.stdout
        status = gpu_project.doit('status', 'job=OneRun', 'where=remote')
        assert re.search(r'collected, exited 0 .* 0,1,2,4,5,6,7$', status.stdout, re.M), status.stdout
    finally:
        foreign.remove(force=True)


def test_more_gpus_than_the_host_has_fail_before_anything_is_built(gpu_project, target):
    failed = gpu_project.doit('run_remote', 'job=OneRun', 'gpus=9', check=False)
    assert failed.returncode != 0
    assert (f'ERROR: job OneRun asks for 9 GPUs (gpus = "9"), and {host_text(target)} has 8: 0, 1, 2, 3, 4, 5, '
            f'6, 7 (NVIDIA Stand-In 16GB)') in failed.stderr
    assert 'TIP: ask for 8 at most (gpus=8)' in failed.stderr
    assert not gpu_project.path('build/OneRun').exists()  # not even serialized
    unknown = gpu_project.doit('run_remote', 'job=OneRun', 'gpus=0,9', check=False)
    assert 'asks for GPU 9 (gpus = "0,9"), which' in unknown.stderr and unknown.returncode != 0


def test_all_and_ids_are_given_as_asked_and_a_held_lock_of_a_dead_process_lets_the_next_run_go(
        gpu_project, target):
    ran = gpu_project.doit('run_remote', 'job=OneRun', 'gpus=all')
    assert 'seed 0 on GPUs [0,1,2,3,4,5,6,7]' in ran.stdout
    # another process holds the host's GPU lock, and dies holding it (kill -9): the lock goes with it
    holder = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER, str(gpu_project.path('pipeline.toml'))],
                              stdout=subprocess.PIPE, text=True, cwd=REPO, env=gpu_project.env())
    try:
        assert holder.stdout.readline().strip() == 'holding'
        run = Output(gpu_project.popen('run_remote', 'job=OneRun', 'gpus=0,2'))
        wait_for(lambda: 'Waiting for the GPU lock of ' in run.text(), timeout=300, what='the run waiting for the lock')
        holder.send_signal(signal.SIGKILL)
        assert run.wait() == 0, run.text('err')
        assert 'seed 0 on GPUs [0,2]' in run.text()
    finally:
        holder.kill()
        holder.wait()


LOCK_HOLDER = '''
import sys, time
from tg_pipeline import config
from tg_pipeline.hosts.gpus import gpu_lock
from tg_pipeline.hosts.host import open_host
with open_host(config.load(sys.argv[1]), 'remote') as host:
    with gpu_lock(host):
        print('holding', flush=True)
        time.sleep(900)
'''
