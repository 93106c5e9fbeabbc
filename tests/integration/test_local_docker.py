"""The pipeline against the real local Docker engine: runs, failures, limits, and incremental builds."""
import json
import time

import pytest

from conftest import ran

from .conftest import HOLD, release

pytestmark = pytest.mark.docker
JOB_TASKS = ['serialize', 'sdist', 'dockerfile', 'build_image']


def image_record(project, job='ExampleJob'):
    return json.loads(project.read(f'build/{job}/image.json'))


def layers(client, image_id):
    return client.images.get(image_id).attrs['RootFS']['Layers']


def leftovers(client, job, project):
    return client.containers.list(all=True, filters={'label': project.labels(job)}, ignore_removed=True)


def test_run_local_prints_the_container_lines(project, docker_client):
    result = project.doit('run_local', 'job=ExampleJob', env={'EXAMPLE_VARIABLE': 'TEST'})
    out = result.stdout
    expected = ['Welcome to Training Grounds!', 'Loading job',
                "Job of type <class 'examplejob__0_0_0.jobs.example_job.ExampleJob'> is loaded",
                'Job has `run` attribute', 'Variable EXAMPLE_VARIABLE is found: True', 'SUCCESS',
                'Job has exited successfully', 'DONE. Exiting Training Grounds.']
    positions = [out.index(' INFO: ' + line) for line in expected]
    assert positions == sorted(positions)
    assert leftovers(docker_client, 'ExampleJob', project) == []  # the finished container is removed


def test_variable_absent_here_is_absent_there(project, docker_client):
    env = project.env()
    env.pop('EXAMPLE_VARIABLE', None)
    import subprocess, sys
    result = subprocess.run([sys.executable, '-m', 'doit', 'run_local', 'job=ExampleJob', 'env_missing=ignore'],
                            cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'Variable EXAMPLE_VARIABLE is found: False' in result.stdout


def test_an_unset_env_variable_stops_the_run_before_it_starts(project, docker_client):
    """By default (env_missing = "error") a variable named in env but unset here is an error, before any
    container exists; the two fixes the TIP names both work."""
    env = project.env()
    env.pop('EXAMPLE_VARIABLE')
    import subprocess, sys
    doit = [sys.executable, '-m', 'doit', 'run_local', 'job=ExampleJob']
    result = subprocess.run(doit, cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert result.stderr.count('ERROR: ') == 1 and 'Traceback' not in result.stderr
    assert ("ERROR: key 'jobs.ExampleJob.env': job ExampleJob passes EXAMPLE_VARIABLE from this environment "
            f"(env, set at {project.path('pipeline.toml')}:9), but it is not set here") in result.stderr
    assert ('TIP: set it first: export EXAMPLE_VARIABLE=...; or, to run without, env_missing = "ignore" in [run] '
            '(or in [jobs.ExampleJob]) of pipeline.toml, or env_missing=ignore on the command line') in result.stderr
    assert 'Welcome to Training Grounds!' not in result.stdout
    assert 'TaskFailed' not in result.stdout and 'not set here' not in result.stdout  # said once, on stderr
    assert leftovers(docker_client, 'ExampleJob', project) == []
    assert not project.path('build/ExampleJob/runs').exists()  # no run was started, nothing collected
    exported = subprocess.run(doit, cwd=project.root, env={**env, 'EXAMPLE_VARIABLE': 'set'}, capture_output=True,
                              text=True, timeout=600)
    assert 'Variable EXAMPLE_VARIABLE is found: True' in exported.stdout
    project.edit('pipeline.toml', 'memory_gb = 0.5\n', 'memory_gb = 0.5\nenv_missing = "ignore"\n')
    allowed = subprocess.run(doit, cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
    assert allowed.returncode == 0, allowed.stderr
    assert 'Variable EXAMPLE_VARIABLE is found: False' in allowed.stdout


def test_second_run_rebuilds_nothing(project, docker_client):
    project.doit('run_local', 'job=ExampleJob')
    first = image_record(project)
    result = project.doit('run_local', 'job=ExampleJob')
    assert [ran(result.stdout, f'{t}:ExampleJob') for t in JOB_TASKS] == [False] * 4
    assert ran(result.stdout, 'run_local:ExampleJob')
    assert image_record(project) == first


def test_source_edit_rebuilds_sdist_and_image_but_reuses_dependency_layer(project, docker_client):
    project.doit('run_local', 'job=ExampleJob')
    before = image_record(project)['image_id']
    project.edit('jobs/example_job.py', "log('SUCCESS')", "log('SUCCESS')\n        log('edited')")
    result = project.doit('run_local', 'job=ExampleJob')
    assert ran(result.stdout, 'sdist:ExampleJob') and ran(result.stdout, 'build_image:ExampleJob')
    assert not ran(result.stdout, 'dockerfile:ExampleJob')
    assert 'INFO: edited' in result.stdout
    after = image_record(project)['image_id']
    assert after != before
    old, new = layers(docker_client, before), layers(docker_client, after)
    assert new[:len(old)] == old  # base, dependency and code layers reused: the code layer is the base now
    assert len(new) == len(old) + 1  # only the files changed since then are new, in a layer above it
    # no docker build: the code layer was appended to the dependency image; one line for the step
    assert 'Step 1/' not in result.stdout + result.stderr and 'Using cache' not in result.stdout
    assert any(line.startswith('build_image:ExampleJob  ') and line.endswith(' s (code layer only)')
               for line in result.stdout.splitlines())
    assert result.stdout.splitlines()[-1].startswith('Run ') and ' (local): exit 0; ' in result.stdout
    deps = json.loads(project.read('build/ExampleJob/deps.json'))['local']['image_id']
    assert docker_client.api.inspect_image(after)['Config']['Image'] == deps
    assert layers(docker_client, deps) == new[:-2]  # the dependency image, then the base and the delta
    labels = docker_client.api.inspect_image(after)['Config']['Labels']
    assert labels['tg_pipeline.job'] == 'ExampleJob' and 'tg_pipeline.deps' not in labels


def test_requirements_change_rebuilds_the_dependency_image_only_then(project, docker_client):
    project.doit('build_image', 'job=ExampleJob')
    deps = json.loads(project.read('build/ExampleJob/deps.json'))['local']['image_id']
    project.edit('jobs/example_job.py', "log('SUCCESS')", "log('SUCCESS')\n        log('edited')")
    project.doit('build_image', 'job=ExampleJob')
    assert json.loads(project.read('build/ExampleJob/deps.json'))['local']['image_id'] == deps
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', 'source_roots = ["jobs"]\ndependencies = ["six"]')
    result = project.doit('build_image', 'job=ExampleJob')
    rebuilt = json.loads(project.read('build/ExampleJob/deps.json'))['local']['image_id']
    assert rebuilt != deps and ran(result.stdout, 'dockerfile:ExampleJob')
    assert 'Step 1/' not in result.stdout and 'dependencies and code layer)' in result.stdout
    image = image_record(project)['image_id']
    assert docker_client.api.inspect_image(image)['Config']['Image'] == rebuilt
    assert docker_client.containers.run(image, ['python', '-c', 'import six'], remove=True) == b''
    project.edit('pipeline.toml', 'dependencies = ["six"]', 'dependencies = ["six", "cloudpickle"]')
    verbose = project.doit('build_image', 'job=ExampleJob', 'verbose=1')
    assert 'Step 1/' in verbose.stdout and 'Successfully built' in verbose.stdout  # the whole build log


def test_changed_job_arguments_reserialize(project, docker_client):
    project.doit('run_local', 'job=ExampleJob')
    payload = project.path('build/ExampleJob/resources/job.pkl').read_bytes()
    project.edit('pipeline.toml', 'args = [["EXAMPLE_VARIABLE"]]', 'args = [["EXAMPLE_VARIABLE", "OTHER_VAR"]]')
    result = project.doit('run_local', 'job=ExampleJob')
    assert ran(result.stdout, 'serialize:ExampleJob')
    assert project.path('build/ExampleJob/resources/job.pkl').read_bytes() != payload
    assert 'Variable OTHER_VAR is found: False' in result.stdout


def test_changing_an_unrelated_job_touches_nothing_of_this_one(project, docker_client):
    project.doit('build_image', 'job=ExampleJob')
    image = image_record(project)
    project.edit('pipeline.toml', 'message = "boom from the fixture"', 'message = "another boom"')
    project.edit('pipeline.toml', 'args = [3]', 'args = [4]')
    result = project.doit('build_image', 'job=ExampleJob')
    assert [ran(result.stdout, f'{t}:ExampleJob') for t in JOB_TASKS] == [False] * 4
    assert image_record(project) == image


def test_image_gone_from_the_engine_is_rebuilt(project, docker_client):
    project.doit('build_image', 'job=ExampleJob')
    record = image_record(project)
    docker_client.images.remove(record['tag'], force=True)
    result = project.doit('build_image', 'job=ExampleJob')
    assert ran(result.stdout, 'build_image:ExampleJob')
    assert not ran(result.stdout, 'sdist:ExampleJob')
    assert docker_client.images.get(record['tag'])


def test_failing_job_fails_the_task_with_its_traceback(project, docker_client):
    result = project.doit('run_local', 'job=FailingJob', check=False)
    assert result.returncode == 1
    assert 'Job has NOT exited successfully' in result.stdout
    assert 'RuntimeError: boom from the fixture' in result.stderr
    assert 'ERROR: job FailingJob failed (local run)' in result.stderr
    assert 'exit code: 1' in result.stderr
    assert 'jobs/failing_job.py' in result.stderr  # the job's own frame, from inside the container
    assert leftovers(docker_client, 'FailingJob', project) == []


def test_cpu_and_memory_limits_are_applied(project, docker_client):
    process = project.popen('run_local', 'job=SleepJob', HOLD)  # running until released
    try:
        deadline = time.time() + 120
        found = []
        while not found and time.time() < deadline and process.poll() is None:
            found = docker_client.containers.list(filters={'label': project.labels('SleepJob')})
            time.sleep(0.1)
        assert found, process.communicate()
        host = found[0].attrs['HostConfig']
        assert host['NanoCpus'] == 500_000_000
        assert host['Memory'] == 256 * 1024 ** 2
        labels = found[0].labels
        assert labels['tg_pipeline.package'] == 'sleepjob' and labels['tg_pipeline.version'] == '0.0.0'
        assert labels['tg_pipeline.run_id']
    finally:
        release(*leftovers(docker_client, 'SleepJob', project))
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert 'slept' in out
    assert leftovers(docker_client, 'SleepJob', project) == []


def test_memory_override_on_the_command_line(project, docker_client):
    project.doit('build_image', 'job=SleepJob')
    process = project.popen('run_local', 'job=SleepJob', 'memory=0.125', 'cpu=0.25', HOLD)
    try:
        found, deadline = [], time.time() + 60
        while not found and time.time() < deadline and process.poll() is None:
            found = docker_client.containers.list(filters={'label': project.labels('SleepJob')})
            time.sleep(0.1)
        assert found, process.communicate()
        host = found[0].attrs['HostConfig']
        assert (host['Memory'], host['NanoCpus']) == (128 * 1024 ** 2, 250_000_000)
    finally:
        release(*leftovers(docker_client, 'SleepJob', project))
        process.communicate(timeout=120)
    assert process.returncode == 0
