"""Issue 22 on the real engines and the test remote: a code edit imports none of the job's modules here; a failing
job's traceback said once in the project's paths; a job broken since it was checked, one ERROR/TIP from the
container; every kind of run gets its output folder; a list from the command line replaces the job's; a pull
address; a stopped run says so; status of every project. Fixture project ``tests/projects/edit_loop``.
"""
import io
import json
import re

import pytest

from conftest import wait_for

from .conftest import release

pytestmark = pytest.mark.remote
HOLD = 'env_files=hold.env'


@pytest.fixture
def loop(project_factory, docker_client, remote_docker):
    """The fixture project in a folder of its own; its job images go afterwards from both engines."""
    project = project_factory('edit_loop')
    yield project
    from tg_pipeline.console import Console
    from tg_pipeline.image.housekeeping import prune_job_images
    for client in (docker_client, remote_docker):
        prune_job_images(client, project.id, keep=0, console=Console(out=io.StringIO()))


def imports_here(project, log):
    return log.read_text().splitlines() if log.exists() else []


def test_a_code_edit_imports_none_of_the_jobs_modules_here(loop, tmp_path):
    log = tmp_path / 'imports.log'
    first = loop.doit('run_local', 'job=Train', env={'IMPORT_LOG': str(log)})
    assert 'training at rate 1.0' in first.stdout
    checked = imports_here(loop, log)  # built once here (the record is new) and by the import check
    assert checked and all(line.startswith('imported by ') for line in checked)
    loop.edit('jobs/train.py', 'return rate * 2', 'return rate * 3')  # an edit inside a function
    edited = loop.doit('run_local', 'job=Train', env={'IMPORT_LOG': str(log)})
    assert 'training at rate 1.5' in edited.stdout  # the edit ran ...
    assert imports_here(loop, log) == checked  # ... and nothing here imported the job's module for it
    loop.edit('pipeline.toml', 'kwargs = { rate = 0.5 }', 'kwargs = { rate = 0.25 }')  # the record changes
    retold = loop.doit('run_local', 'job=Train', env={'IMPORT_LOG': str(log)})
    assert 'training at rate 0.75' in retold.stdout and len(imports_here(loop, log)) > len(checked)


@pytest.mark.parametrize('where', ['attached', 'local', 'remote'])
def test_a_failing_job_says_its_traceback_once_in_the_projects_paths(loop, where, target):
    failed = loop.doit(f'run_{where}', 'job=Diverge', check=False)
    assert failed.returncode == 1
    said = failed.stdout + failed.stderr
    assert said.count('Traceback (most recent call last):') == 1, said
    assert said.count('ValueError: the loss diverged at rate 9.0') == 2, said  # the traceback, the ERROR's summary
    assert re.search(r'^  jobs/train\.py:\d+, in run\n    raise ValueError\(', said, re.M), said
    for ours in ('/opt/tg_pipeline', '_tg_runtime', 'tg_pipeline/', str(loop.root)):
        assert ours not in said, (ours, said)
    host = {'attached': 'attached run on this machine', 'local': 'local run',
            'remote': f'remote {target.login().user}@{target.login().hostname}:'}[where]
    assert re.search(rf'^ERROR: job Diverge failed \({re.escape(host)}.*\): ValueError: the loss diverged at rate '
                     r'9\.0 at jobs/train\.py:\d+$', failed.stderr, re.M), failed.stderr
    assert failed.stderr.count('ERROR: ') == 1


def test_a_job_broken_since_its_check_is_one_paragraph_from_the_container(loop):
    loop.doit('run_local', 'job=Train')
    loop.edit('jobs/train.py', 'class Train:', 'class Trainer:')  # a code edit: nothing here builds the job
    broken = loop.doit('run_local', 'job=Train', check=False)
    assert broken.returncode == 1
    assert ("ERROR: job Train could not start (local run): pipeline.toml:14, key 'jobs.Train.factory': factory "
            "'jobs.train:Train': module 'jobs.train' has no 'Train'") in broken.stderr
    assert 'TIP: check the class or function name defined in jobs/train.py' in broken.stderr
    assert broken.stderr.count('ERROR: ') == 1 and 'Traceback' not in broken.stdout + broken.stderr


@pytest.mark.parametrize('where', ['attached', 'local'])
def test_every_kind_of_run_gets_its_output_folder_in_the_same_place(loop, where):
    done = loop.doit(f'run_{where}', 'job=Train')
    runs = loop.path(f'build/Train/runs/{where}')
    [folder] = [p for p in runs.iterdir() if p.is_dir() and p.name != 'what-ran']  # (what-ran: the records)
    assert (folder / 'output' / 'model.txt').read_text() == 'rate=0.5\n'
    assert str(folder.relative_to(loop.root)) in done.stdout


def test_a_mount_from_the_command_line_replaces_the_jobs(loop, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'rows.csv').write_text('a,b\n')
    loop.edit('pipeline.toml', 'kwargs = { rate = 0.5 }', f'kwargs = {{ rate = 0.5 }}\nmounts = ["{tmp_path}:/data"]')
    ran = loop.doit('run_local', 'job=Train', f'mounts={data}:/data:ro')  # not: Duplicate mount point: /data
    assert 'training at rate 1.0' in ran.stdout
    twice = loop.doit('run_local', 'job=Train', f'mounts={data}:/data,{tmp_path}:/data', check=False)
    assert twice.returncode != 0 and twice.stderr.count('ERROR: ') == 1
    assert (f"container path /data is given twice, as '{data}:/data' and as '{tmp_path}:/data' (both on the command "
            f"line)") in twice.stderr


def test_the_remote_pulls_from_the_pull_address(loop, remote_docker):
    from tg_pipeline import config
    address = config.load(loop.path('pipeline.toml'), environ={}).registry.address
    port = address.rpartition(':')[2]
    pulled = loop.doit('run_remote', 'job=Train', f'registry.pull_address=localhost:{port}')
    assert f'pull  localhost:{port}/tgloop-train:0.0.0' in pulled.stderr + pulled.stdout
    image_id = json.loads(loop.read('build/Train/image.json'))['image_id']
    assert remote_docker.images.get(f'localhost:{port}/tgloop-train:0.0.0').id == image_id
    loop.edit('jobs/train.py', 'return rate * 2', 'return rate * 4')  # a new image: pulled from a wrong address
    wrong = loop.doit('run_remote', 'job=Train', 'registry.pull_address=localhost:1', check=False)
    assert wrong.returncode != 0 and wrong.stderr.count('ERROR: ') == 1
    assert 'localhost:1' in wrong.stderr and 'TIP: ' in wrong.stderr


def test_a_stopped_run_says_who_stopped_it_and_when(loop, docker_client):
    started = loop.doit('run_local', 'job=Train', 'detach=1', HOLD)
    run_id = re.search(r'Started run (\S+)', started.stdout).group(1)
    wait_for(lambda: docker_client.containers.list(filters={'label': [f'tg_pipeline.run_id={run_id}']}),
             what='the run')
    loop.doit('stop', 'job=Train')
    result = loop.doit('result', 'job=Train', check=False)
    assert result.returncode == 1
    from tg_pipeline.config.identity import owner
    assert re.search(rf'ERROR: job Train was stopped by {re.escape(owner())} at '
                     r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(doit stop; local run\)', result.stderr), result.stderr
    assert 'signal' not in result.stderr
    status = loop.doit('status', 'job=Train')
    assert re.search(rf'{run_id}\s+collected, stopped by ', status.stdout)


def test_status_of_every_project_lists_their_runs_whatever_their_jobs(loop, project_factory, docker_client):
    other = project_factory('basic')  # another project, with other job names
    started = other.doit('run_local', 'job=SleepJob', 'detach=1', HOLD)
    theirs = re.search(r'Started run (\S+)', started.stdout).group(1)
    try:
        everyone = loop.doit('status', 'all_projects=1').stdout
        assert re.search(rf'^{theirs}\s+SleepJob\s', everyone, re.M), everyone
        assert everyone.count("# every project's runs on ") == 1  # once, not once per job of this project
        assert theirs not in loop.doit('status', 'job=Train').stdout  # without it: this project's own
    finally:
        release(*docker_client.containers.list(filters={'label': [f'tg_pipeline.run_id={theirs}']}))
        other.doit('logs', 'job=SleepJob', 'follow=1', check=False)


def test_switching_to_the_registry_after_ssh_sends_no_layer_the_remote_has(loop, remote_docker):
    first = loop.doit('run_remote', 'job=Train', 'transfer=ssh')
    assert 'training at rate 1.0' in first.stdout
    loop.edit('jobs/train.py', 'return rate * 2', 'return rate * 3')
    switched = loop.doit('run_remote', 'job=Train')  # the registry, as pipeline.toml says
    said = switched.stdout + switched.stderr
    assert 'training at rate 1.5' in switched.stdout
    assert 'has the dependency layers from a transfer over SSH, which a pull from the registry would download ' \
           'again: the code layer goes over SSH too (said once)' in said
    assert 'pull  ' not in said and re.search(r'transfer: 1 of \d+ layers sent', said), said  # the code layer only
    loop.edit('jobs/train.py', 'return rate * 3', 'return rate * 4')
    again = loop.doit('run_remote', 'job=Train')
    assert 'training at rate 2.0' in again.stdout and 'said once' not in again.stdout + again.stderr


def test_our_frames_show_with_tg_pipeline_debug(loop):
    failed = loop.doit('run_local', 'job=Diverge', env={'TG_PIPELINE_DEBUG': '1'}, check=False)
    assert failed.returncode == 1
    assert '_tg_runtime/entry.py' in failed.stderr and re.search(r'jobs/train\.py:\d+, in run', failed.stderr)
