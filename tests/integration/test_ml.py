"""GPUs, data and caches on the real engines: the local one and the simulated remote (its own engine, reached over
SSH), and the swarm. Fixture project ``tests/projects/ml``; every assertion on an engine is scoped to the test's
own project (``project.labels``), since others use the same engines at the same time.

The local engine has no GPU and no NVIDIA driver: GPU runs there are checked up to the engine's refusal (the
created container's device request, then the paragraph), and on swarm up to the refusal before any service exists.
The remote has stand-in GPUs (scripts/setup_remote.sh): its GPU runs are tests/integration/test_gpus.py's.
"""
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from conftest import wait_for

pytestmark = pytest.mark.remote


@pytest.fixture
def engines(docker_client, remote_docker):
    return {'local': docker_client, 'remote': remote_docker}


@pytest.fixture
def ml(project_factory, engines):
    """The fixture project in a folder of its own (a project id of its own); its job images go afterwards."""
    project = project_factory('ml')
    yield project
    from tg_pipeline.console import Console
    from tg_pipeline.image.housekeeping import prune_job_images
    for client in engines.values():
        prune_job_images(client, project.id, keep=0, console=Console(out=io.StringIO()))


@pytest.fixture
def shared_dir():
    """A folder both hosts' engines see (the remote shares this machine's files), readable by the remote's SSH
    user, which checks that a mounted path exists."""
    folder = tempfile.mkdtemp(prefix='tgml-')
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def host_text(where, target):
    if where == 'local':
        return 'this machine'
    return target.login().where


def ours(client, project, job):
    return client.containers.list(all=True, filters={'label': project.labels(job)}, ignore_removed=True)


def run_id_of(output):
    return re.search(r'Started run (\S+)', output).group(1)




# --- GPUs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('where', ['local'])  # the remote gives (stand-in) GPUs: test_gpus.py
def test_gpus_become_a_device_request_and_an_engine_without_them_is_one_paragraph(ml, where, engines,
                                                                                  target):
    failed = ml.doit(f'run_{where}', 'job=Probe', 'gpus=all', check=False)
    assert failed.returncode != 0
    host = host_text(where, target)
    assert (f'ERROR: job Probe asks for GPUs (gpus = "all"), and the Docker engine on {host} cannot give any: '
            'could not select device driver "" with capabilities: [[gpu]]') in failed.stderr
    assert f'TIP: install the NVIDIA Container Toolkit on {host}' in failed.stderr
    assert 'sudo apt-get install -y nvidia-container-toolkit' in failed.stderr
    assert 'Traceback' not in failed.stderr + failed.stdout
    assert ours(engines[where], ml, 'Probe') == []

    # the container as the engine made it, before it is started (and refused)
    from tg_pipeline import config
    from tg_pipeline.workflow.context import Context
    from tg_pipeline.workflow.run_steps import run_spec
    from tg_pipeline.errors import PipelineError
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.runs.container import ContainerBackend
    settings = config.load(ml.path('pipeline.toml'), overrides={'gpus': '0,2'})
    spec = run_spec(Context(settings), 'Probe')
    with open_host(settings, where) as place:
        backend = ContainerBackend(place)
        handle = backend.prepare(spec)
        try:
            requests = engines[where].api.inspect_container(handle.ref)['HostConfig']['DeviceRequests']
            assert requests == [{'Driver': '', 'Count': 0, 'DeviceIDs': ['0', '2'], 'Capabilities': [['gpu']],
                                 'Options': {}}]
            with pytest.raises(PipelineError) as refused:
                backend.start(handle)
            assert refused.value.message.startswith(f'job Probe asks for GPUs (gpus = "0,2"), and the Docker engine '
                                                    f'on {host} cannot give any')
        finally:
            backend.discard(handle)
    assert ours(engines[where], ml, 'Probe') == []


def test_swarm_refuses_gpus_no_node_advertises_before_any_service(ml, docker_client):
    failed = ml.doit('run_swarm', 'job=Probe', 'gpus=1', check=False)
    assert failed.returncode != 0
    assert ('ERROR: the tasks cannot be scheduled: each reserves 1 GPU(s) (generic resource "gpu"), and no ready '
            'node of the swarm on swarm local advertises that many') in failed.stderr
    assert '"node-generic-resources": ["gpu=1"]' in failed.stderr
    assert docker_client.services.list(filters={'label': ml.labels('Probe')}) == []


def test_swarm_tasks_get_shared_memory_and_keep_the_time_limit(ml, docker_client):
    sized = ml.doit('run_swarm', 'job=Probe', 'shm_gb=0.25', 'jobs.Probe.kwargs.shm=true')
    assert f'[variant 0] SHM {256 * 1024 ** 2}' in sized.stdout  # a tmpfs on /dev/shm: services have no ShmSize
    stopped = ml.doit('run_swarm', 'job=Sleepy', 'max_runtime_s=3', check=False)
    assert stopped.returncode != 0
    assert 'variant 0 (job): failed exit 124 (ran out of its time limit of 3 s)' in stopped.stderr
    assert docker_client.services.list(filters={'label': ml.labels('Sleepy')}) == []


# --- shared memory ------------------------------------------------------------------------------------------
def shm_bytes(output):
    return int(re.search(r'^SHM (\d+)$', output, re.M).group(1))


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_the_job_sees_its_shared_memory_size_or_the_hosts(ml, where, engines):
    sized = ml.doit(f'run_{where}', 'job=Probe', 'shm_gb=0.25', 'jobs.Probe.kwargs.shm=true')
    assert shm_bytes(sized.stdout) == 256 * 1024 ** 2
    shared = ml.doit(f'run_{where}', 'job=Probe', 'ipc=host', 'jobs.Probe.kwargs.shm=true')
    here = os.statvfs('/dev/shm')  # the remote shares this machine's IPC namespace and its /dev/shm
    assert shm_bytes(shared.stdout) == here.f_blocks * here.f_frsize
    assert ours(engines[where], ml, 'Probe') == []


# --- host folders ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('where', ['local', 'remote'])
def test_a_host_folder_is_read_only_unless_rw_and_a_missing_one_is_refused(ml, where, engines, shared_dir,
                                                                           target):
    with open(os.path.join(shared_dir, 'data.txt'), 'w') as file:
        file.write('placed on the host')
    read = ml.doit(f'run_{where}', 'job=Probe', f'mounts={shared_dir}:/data', 'jobs.Probe.kwargs.read=/data/data.txt',
                   'jobs.Probe.kwargs.write=/data/new.txt')
    assert 'READ placed on the host' in read.stdout
    assert 'WRITE refused: errno 30' in read.stdout  # EROFS
    assert os.listdir(shared_dir) == ['data.txt']

    written = ml.doit(f'run_{where}', 'job=Probe', f'mounts={shared_dir}:/out:rw',
                      'jobs.Probe.kwargs.write=/out/new.txt')
    assert 'WRITE ok' in written.stdout
    with open(os.path.join(shared_dir, 'new.txt')) as file:
        assert file.read() == 'written by the job'

    missing = f'{shared_dir}/not-there'
    refused = ml.doit(f'run_{where}', 'job=Probe', f'mounts={missing}:/data', check=False)
    assert refused.returncode != 0
    assert (f'ERROR: job Probe mounts {missing} (mounts entry "{missing}:/data"), which does not exist on '
            f'{host_text(where, target)}') in refused.stderr
    assert 'TIP: put the data there' in refused.stderr and 'Traceback' not in refused.stderr
    assert ours(engines[where], ml, 'Probe') == []


# --- caches -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('where', ['local', 'remote'])
def test_a_cache_persists_between_runs_and_cleanup_removes_this_projects_only(ml, where, engines):
    client = engines[where]
    volume = f'{ml.id}-cache-data'
    other = f'tgml-other-{os.getpid()}-{time.time_ns()}-cache-data'  # another project's cache of the same name
    client.volumes.create(other, labels={'tg_pipeline.project': other[:-len('-cache-data')],
                                         'tg_pipeline.cache': 'data'})
    try:
        first = ml.doit(f'run_{where}', 'job=Cached')
        assert "CACHE BEFORE ''" in first.stdout
        run_id = re.search(r'^Run (\S+) \(', first.stdout, re.M).group(1)
        second = ml.doit(f'run_{where}', 'job=Cached')
        assert f"CACHE BEFORE '{run_id}\\n'" in second.stdout
        assert client.volumes.get(volume).attrs['Labels']['tg_pipeline.project'] == ml.id

        cleaned = ml.doit('cleanup', f'where={where}', 'caches=1')
        assert f'removed cache volume {volume}' in cleaned.stdout
        assert [v.name for v in client.volumes.list(filters={'label': f'tg_pipeline.project={ml.id}'})] == []
        assert client.volumes.get(other).name == other
        again = ml.doit(f'run_{where}', 'job=Cached')
        assert "CACHE BEFORE ''" in again.stdout  # a new, empty cache
    finally:
        client.volumes.get(other).remove()
        ml.doit('cleanup', f'where={where}', 'caches=1', check=False)


# --- ports and env files ---------------------------------------------------------------------------------------
def test_a_published_port_and_values_from_an_env_file(ml, docker_client):
    ml.write('secrets.env', '# tokens for the job\nexport HF_TOKEN="hf_abc=123"\nPLAIN=a b\n')
    shown = ml.doit('run_local', 'job=Probe', 'env_files=secrets.env', 'jobs.Probe.kwargs.env=["HF_TOKEN","PLAIN"]')
    assert 'ENV HF_TOKEN=hf_abc=123' in shown.stdout and 'ENV PLAIN=a b' in shown.stdout
    assert 'hf_abc' not in ml.doit('config', 'job=Probe', 'env_files=secrets.env').stdout
    port = free_port()
    ml.doit('run_local', 'job=Server', 'detach=1', f'ports={port}:8765')
    try:
        assert wait_for(lambda: fetch(f'http://127.0.0.1:{port}/index.txt'), timeout=60,
                        what='the published port') == 'hello through the tunnel'
    finally:
        ml.doit('stop', 'job=Server', check=False)
    assert ours(docker_client, ml, 'Server') == []


# --- time limit -----------------------------------------------------------------------------------------------
def test_an_attached_run_past_its_limit_is_stopped_and_reported_as_timed_out(ml, docker_client):
    ml.doit('build_image', 'job=Sleepy')
    failed = ml.doit('run_local', 'job=Sleepy', check=False)  # [jobs.Sleepy]: 60 s of ticks, max_runtime_s = 5
    assert failed.returncode != 0
    assert 'tick 0' in failed.stdout  # it ran, and was stopped before its last tick (below)
    assert 'ERROR: job Sleepy ran out of its time limit of 5 s (max_runtime_s; local run)' in failed.stderr
    assert 'tick 59' not in failed.stdout and 'Traceback' not in failed.stderr
    runs = ml.path('build/Sleepy/runs/local')
    record = json.loads(next(runs.glob('*.json')).read_text())
    assert record['timed_out'] is True and record['exit_code'] == 124 and record['max_runtime_s'] == 5
    assert (runs / record['run_id'] / 'output' / 'partial.txt').read_text() == 'written before the time ran out'
    assert ours(docker_client, ml, 'Sleepy') == []


def test_a_detached_run_is_stopped_at_its_limit_with_nobody_watching(ml, remote_docker):
    run_id = run_id_of(ml.doit('run_remote', 'job=Sleepy', 'detach=1').stdout)
    container = wait_for(lambda: [c for c in ours(remote_docker, ml, 'Sleepy') if c.status == 'exited'],
                         timeout=60, what='the run to end by itself')[0]
    state = container.attrs['State']
    assert state['ExitCode'] == 124
    printed = container.logs().decode()
    assert 'tick 0' in printed and 'tick 59' not in printed  # stopped by its limit, not at its own end
    status = ml.doit('status', 'job=Sleepy', 'where=remote')
    assert re.search(rf'{run_id}\s+exited 124', status.stdout)
    result = ml.doit('result', 'job=Sleepy', 'where=remote', check=False)
    assert result.returncode != 0
    assert 'ERROR: job Sleepy ran out of its time limit of 5 s (max_runtime_s; remote' in result.stderr
    runs = ml.path('build/Sleepy/runs/remote')
    assert json.loads((runs / f'{run_id}.json').read_text())['timed_out'] is True
    assert (runs / run_id / 'output' / 'partial.txt').exists()
    status = ml.doit('status', 'job=Sleepy', 'where=remote', f'run_id={run_id}')
    assert re.search(rf'{run_id}\s+collected, exited 124 \(timed out after 5 s\)', status.stdout)
    assert ours(remote_docker, ml, 'Sleepy') == []


# --- reaching a running job --------------------------------------------------------------------------------------
@pytest.mark.parametrize('where', ['local', 'remote'])
def test_exec_runs_a_command_in_the_running_job(ml, where, engines):
    run_id = run_id_of(ml.doit(f'run_{where}', 'job=Server', 'detach=1').stdout)
    try:
        done = ml.doit('exec', 'job=Server', f'where={where}',
                       'cmd=echo run=$TG_PIPELINE_RUN_ID; echo to stderr >&2; exit 3', check=False)
        assert done.returncode != 0
        assert f'run={run_id}\n' in done.stdout and 'to stderr\n' in done.stderr
        assert '# exit code 3' in done.stdout
        assert f"ERROR: the command exited with code 3 in job Server's run ({where})" in done.stderr
        missing = ml.doit('exec', 'job=Server', f'where={where}', 'cmd=nvidia-smi', check=False)
        assert '# exit code 127' in missing.stdout and 'nvidia-smi: not found' in missing.stderr
        ok = ml.doit('exec', 'job=Server', f'where={where}', f'run_id={run_id}', 'cmd=seq 1 50000')
        assert re.findall(r'^\d+$', ok.stdout, re.M) == [str(i) for i in range(1, 50001)]
    finally:
        ml.doit('stop', 'job=Server', f'where={where}', check=False)
    assert ours(engines[where], ml, 'Server') == []


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:  # the job's server is not up yet: the forwarded connection closes
        return None


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_forward_reaches_an_http_server_in_the_job(ml, where, engines):
    ml.doit(f'run_{where}', 'job=Server', 'detach=1')  # python -m http.server 8765 in the job
    port = free_port()
    forwarding = subprocess.Popen(
        [sys.executable, '-m', 'doit', 'forward', 'job=Server', f'where={where}', 'port=8765', f'local_port={port}'],
        cwd=ml.root, env=ml.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        page = wait_for(lambda: fetch(f'http://127.0.0.1:{port}/index.txt'), timeout=60, what='the page')
        assert page == 'hello through the tunnel'
    finally:
        forwarding.send_signal(signal.SIGINT)
        out, err = forwarding.communicate(timeout=30)
        ml.doit('stop', 'job=Server', f'where={where}', check=False)
    assert forwarding.returncode == 0, err
    assert f'Forwarding 127.0.0.1:{port} -> port 8765 of run' in out
    assert 'Stopped forwarding (the run goes on)' in out
    assert ours(engines[where], ml, 'Server') == []
