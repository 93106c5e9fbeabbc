"""The seed's Python API, notebooks, versions side by side, and use from another project."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tg_pipeline import (Packaging, SSHAttachedExecutor, SSHLocalExecutor, SSHRemoteExecutor, install_package_and_get_loader)
from tg_pipeline.image import job_image as job_image_module
from tg_pipeline.errors import JobFailed, PipelineError

from conftest import REPO
from target import TARGET
from unit.test_api import config_for, job_package

from .conftest import RELEASE_FILE, release

SEED_EXAMPLE = '''
from tg_pipeline.ssh_docker import (SSHAttachedExecutor, SSHLocalExecutor, SSHRemoteExecutor, SSHDockerOptions, SSHDockerConfig)
from tg_pipeline.delivery import Packaging, Containering

variable_name = 'EXAMPLE_VARIABLE'

class SSHDockerRoutine:
    def __init__(self, job):
        self.job = job
        name = type(job).__name__.lower()
        packaging = Packaging(name, '0.0.0', dict(job=job))
        packaging.silent = True
        containering = Containering.from_packaging(packaging)
        containering.silent = True
        options = SSHDockerOptions([variable_name])
        self.config =  SSHDockerConfig(packaging, containering, options, None, None)

    def attached(self):
        return SSHAttachedExecutor(self.config)

    def local(self):
        return SSHLocalExecutor(self.config)

from tg_pipeline.delivery.example_job import ExampleJob
import os

os.environ[variable_name] = 'TEST'

job = ExampleJob([variable_name])
routine = SSHDockerRoutine(job)
routine.attached().execute()
print('--- local')
routine.local().execute()
'''


@pytest.mark.docker
def test_seed_example_runs_as_written(tmp_path, docker_client):
    script = tmp_path / 'seed_example.py'
    script.write_text(SEED_EXAMPLE)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert result.returncode == 0, result.stderr
    attached, local = result.stdout.split('--- local\n')
    assert attached.splitlines()[0].endswith(' INFO: Variable EXAMPLE_VARIABLE is found: True')
    assert attached.splitlines()[1].endswith(' INFO: SUCCESS')
    for line in ['Welcome to Training Grounds!', 'Loading job', 'Job has `run` attribute',
                 'Variable EXAMPLE_VARIABLE is found: True', 'SUCCESS', 'Job has exited successfully',
                 'DONE. Exiting Training Grounds.']:
        assert f' INFO: {line}' in local
    assert "Job of type <class 'tg_pipeline.delivery.example_job.ExampleJob'> is loaded" in local


@pytest.mark.docker
def test_execute_returns_values_and_twice_rebuilds_nothing(tmp_path, docker_client, monkeypatch):
    name, _ = job_package(tmp_path, '''
        class Doubler:
            def __init__(self, n):
                self.n = n
            def run(self):
                print('doubling', self.n, flush=True)
                return {'double': self.n * 2}
        ''')
    module = __import__(f'{name}.jobs', fromlist=['Doubler'])
    config = config_for(module.Doubler(21), 'doubler', tmp_path)
    builds = []
    real = job_image_module.compose  # every build of the job image composes it (the code layer on its dependencies)
    monkeypatch.setattr(job_image_module, 'compose', lambda *a, **k: builds.append(a) or real(*a, **k))
    assert SSHAttachedExecutor(config).execute() == {'double': 42}
    assert SSHLocalExecutor(config).execute() == {'double': 42}
    assert len(builds) == 1
    assert SSHLocalExecutor(config).execute() == {'double': 42}
    assert len(builds) == 1  # unchanged job: no rebuild
    stdout, stderr = SSHLocalExecutor(config).get_logs()
    assert 'doubling 21' in stdout
    config.packaging.payload['job'] = module.Doubler(5)  # another payload: rebuilt
    assert SSHLocalExecutor(config).execute() == {'double': 10}
    assert len(builds) == 2


@pytest.mark.docker
def test_failure_raises_with_the_remote_traceback(tmp_path, docker_client):
    name, _ = job_package(tmp_path, '''
        def explode():
            raise ValueError('exploded in the container')
        ''')
    module = __import__(f'{name}.jobs', fromlist=['explode'])
    config = config_for(module.explode, 'exploder', tmp_path)
    with pytest.raises(JobFailed) as info:
        SSHLocalExecutor(config).execute()
    assert 'ValueError: exploded in the container' in info.value.remote_traceback
    assert f'{name}/jobs.py' in info.value.remote_traceback
    assert info.value.exit_code == 1
    with pytest.raises(JobFailed) as info:
        SSHAttachedExecutor(config).execute()
    assert 'exploded in the container' in info.value.remote_traceback


@pytest.mark.parametrize('registry', ['', TARGET.registry])
def test_remote_executor_runs_on_the_remote_host(tmp_path, remote_docker, monkeypatch, registry):
    name, _ = job_package(tmp_path, '''
        import os
        class Greeter:
            def run(self):
                print('greeting:', os.environ['GREETING'], flush=True)
                return os.environ['GREETING']
        ''')
    module = __import__(f'{name}.jobs', fromlist=['Greeter'])
    value = 'it\'s "$(id -un)" ; `x` $HOME\nand ü'
    monkeypatch.setenv('GREETING', value)
    config = config_for(module.Greeter(), 'greeter', tmp_path, env_variables_to_propagate=['GREETING'])
    config.host = TARGET.remote  # the test remote's destination (tests/target.py)
    config.containering.registry = registry  # none: the image goes over SSH, only the missing layers
    assert SSHRemoteExecutor(config).execute() == value
    assert remote_docker.images.get(f'{registry}/tgtest-greeter:0.0.0' if registry else 'tgtest-greeter:0.0.0')
    stdout, _ = SSHRemoteExecutor(config).get_logs()
    assert f'greeting: {value}' in stdout
    assert remote_docker.containers.list(all=True, filters={'label': 'tg_pipeline.package=greeter'}) == []


@pytest.mark.slow
def test_versions_install_side_by_side_in_one_process(tmp_path):
    name, _ = job_package(tmp_path, '''
        class Versioned:
            def __init__(self, tag):
                self.tag = tag
            def run(self):
                return self.tag
        ''')
    module = __import__(f'{name}.jobs', fromlist=['Versioned'])
    loaders = []
    for version in ('1.0.0', '2.0.0'):
        packaging = Packaging('versioned', version, dict(job=module.Versioned(f'v{version}')))
        packaging.build_dir = str(tmp_path / 'build' / version)
        packaging.make_package()
        assert Path(packaging.package_location).name == f'versioned__{version.replace(".", "_")}-{version}.tar.gz'
        loaders.append(install_package_and_get_loader(packaging.package_location, silent=True,
                                                      target=str(tmp_path / 'site')))
    jobs = [loader.load_resource('job') for loader in loaders]
    assert [j.run() for j in jobs] == ['v1.0.0', 'v2.0.0']
    assert type(jobs[0]).__module__ == f'versioned__1_0_0.{name}.jobs'
    assert type(jobs[1]).__module__ == f'versioned__2_0_0.{name}.jobs'
    assert type(jobs[0]) is not type(jobs[1])


@pytest.mark.docker
def test_two_versions_run_concurrently_on_one_engine(tmp_path, docker_client):
    name, _ = job_package(tmp_path, '''
        import os, time
        class Napper:
            """Naps until the test creates the file ``release`` in its container."""
            def __init__(self, release):
                self.release = release
            def run(self):
                while not os.path.exists(self.release):
                    time.sleep(0.1)
                return 'rested'
        ''')
    module = __import__(f'{name}.jobs', fromlist=['Napper'])
    run_ids, executors = [], []
    for version in ('1.0.0', '2.0.0'):
        config = config_for(module.Napper(RELEASE_FILE), 'napper', tmp_path, version, wait_for_stop=False)
        executors.append(SSHLocalExecutor(config))
        run_ids.append(executors[-1].execute())
    try:
        running = docker_client.containers.list(filters={'label': 'tg_pipeline.job=napper'})
        by_run = {c.labels['tg_pipeline.run_id']: c for c in running}
        assert set(run_ids) <= set(by_run)  # both at once
        versions = {by_run[r].labels['tg_pipeline.version'] for r in run_ids}
        assert versions == {'1.0.0', '2.0.0'}
        assert {by_run[r].image.tags[0] for r in run_ids} == {'tgtest-napper:1.0.0', 'tgtest-napper:2.0.0'}
        states = {row['run_id']: row['state'] for row in executors[0].status()}
        assert [states[r] for r in run_ids] == ['running', 'running']
        with pytest.raises(PipelineError, match='is still running'):
            executors[0].result(run_ids[0])
        assert release(*(by_run[r] for r in run_ids)) == 2
        for executor, run_id in zip(executors, run_ids):
            by_run[run_id].wait(timeout=60)
            assert executor.result(run_id) == 'rested'  # collected: value back, container removed
        assert docker_client.containers.list(all=True, filters={'label': 'tg_pipeline.job=napper'}) == []
    finally:
        for container in docker_client.containers.list(all=True, filters={'label': 'tg_pipeline.job=napper'}):
            container.remove(force=True)


NOTEBOOK_CELLS = [
    '''
import os
os.environ['EXAMPLE_VARIABLE'] = 'TEST'

class NotebookJob:
    def __init__(self, n):
        self.n = n

    def run(self):
        import os
        print('notebook job sees', os.environ.get('EXAMPLE_VARIABLE'), flush=True)
        return self.n * 2
''',
    '''
from tg_pipeline import Packaging, Containering, SSHDockerOptions, SSHDockerConfig, SSHLocalExecutor
packaging = Packaging('notebookjob', '0.0.1', dict(job=NotebookJob(21)))
containering = Containering.from_packaging(packaging)
containering.silent = True
config = SSHDockerConfig(packaging, containering, SSHDockerOptions(['EXAMPLE_VARIABLE']), None, None)
result = SSHLocalExecutor(config).execute()
print('RESULT', result)
''',
]


@pytest.mark.docker
def test_notebook_cell_job_runs_in_docker(tmp_path, docker_client, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    # the kernel finds this checkout; restored afterwards (a leaked PYTHONPATH made later pip installs see it)
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    NotebookClient(notebook, timeout=600, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
    output = ''.join(o.get('text', '') for o in notebook.cells[1].outputs)
    assert 'notebook job sees TEST' in output
    assert "Job of type <class '__main__.NotebookJob'> is loaded" in output  # shipped by value
    assert 'RESULT 42' in output
    assert (tmp_path / 'build' / 'notebookjob' / 'image.json').exists()


@pytest.mark.docker
def test_init_project_with_a_third_party_dependency(tmp_path, docker_client):
    project = tmp_path / 'other_project'
    cli = [sys.executable, '-m', 'tg_pipeline', 'init', str(project)]
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    subprocess.run(cli, check=True, env=env, capture_output=True)
    (project / 'jobs' / 'table_job.py').write_text(textwrap.dedent('''
        class TableJob:
            def run(self):
                from tabulate import tabulate  # installed in the image only
                print(tabulate([['a', 1], ['b', 2]], headers=['name', 'n'], tablefmt='github'), flush=True)
                return 'tabulated'
        '''))
    toml = (project / 'pipeline.toml').read_text()
    toml = toml.replace('dependencies = []', 'dependencies = ["tabulate==0.9.0"]')
    (project / 'pipeline.toml').write_text(toml + '\n[jobs.TableJob]\nfactory = "jobs.table_job:TableJob"\n')
    result = subprocess.run([sys.executable, '-m', 'doit', 'run_local', 'job=TableJob'], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '| name   |   n |' in result.stdout
    assert "Result: 'tabulated'" in result.stdout
    assert 'tabulate==0.9.0' in (project / 'build' / 'TableJob' / 'context' / 'requirements.txt').read_text()
    hello = subprocess.run([sys.executable, '-m', 'doit', 'run_local', 'job=HelloJob'], cwd=project, env=env,
                           capture_output=True, text=True, timeout=600)
    assert 'Hello, world!' in hello.stdout
    again = subprocess.run(cli, env=env, capture_output=True, text=True)
    assert again.returncode == 2
    assert 'nothing was written' in again.stderr
