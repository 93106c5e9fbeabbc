"""What a new user meets in the first hour: the wheel installs and works outside this checkout, every setting
is listed by `doit help TASK` and works on the command line, `doit clean`, `doit config`, the status table,
the result at `doit -v 0`, and `doit graph`."""
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, ran
from test_remote import STATE, remote_env  # noqa: F401  (fixture)

WHEELS = STATE / 'wheels'  # dependency wheels, built once from the versions this environment runs
COPY_IGNORE = shutil.ignore_patterns('.git', '.venv', 'build', '*.egg-info', '__pycache__', '.pytest_cache',
                                     'results')


def pip(python, *args, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}  # this checkout unseen
    result = subprocess.run([str(python), '-m', 'pip', '--disable-pip-version-check', *args],
                            capture_output=True, text=True, timeout=900, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f'pip {" ".join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}')
    return result


def requirements(wheel: Path) -> list[str]:
    """The wheel's own Requires-Dist lines (no extras)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA'))
        lines = archive.read(name).decode().splitlines()
    found = [line.split(':', 1)[1].strip() for line in lines if line.startswith('Requires-Dist:')]
    return [r for r in found if 'extra ==' not in r]


@contextlib.contextmanager
def locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may fill the same folder now
        yield folder


def wheel_cache(tmp: Path) -> Path:
    try:
        WHEELS.mkdir(parents=True, exist_ok=True)
        return WHEELS if os.access(WHEELS, os.W_OK) else tmp
    except OSError:
        return tmp


def fill_cache(cache: Path, wheel: Path, tmp: Path) -> None:
    """Wheels of the wheel's dependencies, at the versions this environment runs: from the cache when it has
    them (offline), else fetched once through pip's index."""
    frozen = pip(sys.executable, 'freeze', '--exclude-editable').stdout.splitlines()
    constraints = tmp / 'constraints.txt'
    constraints.write_text('\n'.join(line for line in frozen if '==' in line) + '\n')
    wanted = ['-c', str(constraints), '--find-links', str(cache), '-w', str(cache), *requirements(wheel)]
    with locked(cache):
        if pip(sys.executable, 'wheel', '-q', '--no-index', *wanted, check=False).returncode != 0:
            pip(sys.executable, 'wheel', '-q', *wanted)


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """A fresh virtual environment with this checkout's wheel (pip wheel, pip install), nothing else of ours."""
    tmp = tmp_path_factory.mktemp('wheel')
    source, dist, venv = tmp / 'source', tmp / 'dist', tmp / 'venv'
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)  # the checkout as it is, built where it leaves nothing
    pip(sys.executable, 'wheel', '-q', '--no-deps', '-w', str(dist), str(source))
    [wheel] = dist.glob('tg_pipeline-*.whl')
    cache = wheel_cache(tmp)
    fill_cache(cache, wheel, tmp)
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, capture_output=True, timeout=300)
    pip(venv / 'bin' / 'python', 'install', '-q', '--no-index', '--find-links', str(cache), str(wheel))
    return venv


def in_venv(venv: Path, cwd: Path, *command: str):
    """Run a command of the environment as its user would: PATH to it, no PYTHONPATH, outside the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME', 'TG_PIPELINE_CONFIG')}
    env.update(VIRTUAL_ENV=str(venv), PATH=f'{venv / "bin"}{os.pathsep}{env.get("PATH", "")}')
    result = subprocess.run([str(venv / 'bin' / command[0]), *command[1:]], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f'{" ".join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}'
    return result


def test_the_wheel_installs_and_runs_a_new_project_everywhere(docker_client, remote_env, installed,  # noqa: F811
                                                             tmp_path):
    project = tmp_path / 'first_project'
    project.mkdir()
    where = in_venv(installed, project, 'python', '-c', 'import tg_pipeline, sys; print(tg_pipeline.__file__)')
    assert Path(where.stdout.strip()).is_relative_to(installed)  # not this checkout
    assert not Path(where.stdout.strip()).is_relative_to(REPO)
    init = in_venv(installed, project, 'tg-pipeline', 'init')
    assert 'wrote dodo.py' in init.stdout and 'next: doit run_local job=HelloJob' in init.stdout
    remote = [f'host={remote_env["TG_REMOTE_ALIAS"]}', f'registry={remote_env["TG_REGISTRY"]}']
    try:
        attached = in_venv(installed, project, 'doit', 'run_attached', 'job=HelloJob')
        assert 'Hello, world!' in attached.stdout and "Result: 'said hello to world'" in attached.stdout
        for task in ('run_local', 'run_remote'):
            run = in_venv(installed, project, 'doit', task, 'job=HelloJob', *remote)
            assert 'Welcome to Training Grounds!' in run.stdout, run.stdout
            assert 'Hello, world!' in run.stdout and "Result: 'said hello to world'" in run.stdout
    finally:  # this project's images, here and there (scoped by its project label)
        in_venv(installed, project, 'doit', 'cleanup', 'days=0', 'keep=0')
        in_venv(installed, project, 'doit', 'cleanup', 'days=0', 'keep=0', 'where=remote', *remote)


# --- the result shows at doit -v 0 ----------------------------------------------------------------------
def test_the_result_shows_at_verbosity_0(project):
    quiet = project.doit('-v', '0', 'run_attached', 'job=Counter', 'jobs.Counter.args=[3, 0]')
    assert quiet.stdout.splitlines()[-1] == 'Result: 3'
    loud = project.doit('run_attached', 'job=Counter', 'jobs.Counter.args=[3, 0]')
    assert loud.stdout.splitlines()[-4:] == ['line 0', 'line 1', 'line 2', 'Result: 3']


@contextlib.contextmanager
def images_removed(project):
    """Afterwards, this project's job images go (``doit cleanup``: scoped by the project's label)."""
    try:
        yield
    finally:
        project.doit('cleanup', 'days=0', 'keep=0')


def test_a_container_run_result_shows_at_verbosity_0(project, docker_client):
    with images_removed(project):
        quiet = project.doit('-v', '0', 'run_local', 'job=ResultJob')
    assert "Result: {'sum': 45, 'squares': [0, 1, 4, 9]}" in quiet.stdout.splitlines()


# --- every setting on the command line, listed by doit help ---------------------------------------------
def test_doit_help_lists_the_settings_of_a_task_with_their_values_now(project):
    text = project.doit('help', 'run_local').stdout
    for option in ('--job=NAME', '--detach', '--memory=GB', '--cpu=CORES', '--host=TEXT', '--registry=TEXT',
                   '--run.memory_gb=N', '--docker.image_prefix=TEXT', '--swarm.labels={...}', '--jobs.NAME.KEY=VALUE'):
        assert f'\n  {option} ' in text, option
    assert 'memory limit in GB, 0 = none (as run.memory_gb); now 0.5 (pipeline.toml:11)' in text
    assert 'image_prefix=TEXT  put before every image name, e.g. team-; now "tgtest-" (pipeline.toml:6)' in text
    one_job = project.doit('help', 'run_local:ResultJob').stdout
    assert '--jobs.ResultJob.args=[...]  positional arguments of the factory; now [10] (pipeline.toml:45)' in one_job
    for task, options in (('status', ['--where=VALUE', '--run_id=VALUE', '--all_projects']),
                          ('logs', ['--where=VALUE', '--run_id=VALUE', '--follow']),
                          ('cleanup', ['--where=VALUE', '--days=VALUE', '--keep=VALUE']),
                          ('graph', ['--job=NAME', '--all', '--files'])):
        text = project.doit('help', task).stdout
        assert all(f'\n  {o} ' in text for o in options), (task, text)


def test_a_setting_given_doits_way_makes_the_same_configuration(project):
    plain = project.doit('config', 'memory=2', 'run.env=A,B').stdout
    assert project.doit('config', '--memory=2', '--run.env', 'A,B').stdout == plain
    assert tomllib.loads(plain)['run']['memory_gb'] == 2.0
    counted = project.doit('run_attached:Counter', '--jobs.Counter.args', '[2, 0]')
    assert counted.stdout.splitlines()[-3:] == ['line 0', 'line 1', 'Result: 2']
    twice = project.doit('config', 'memory=1', '--memory=2', check=False)
    assert twice.returncode == 2 and twice.stdout == ''
    assert "ERROR: key 'memory': memory is given twice: memory=1 and --memory=2\n" \
           'TIP: give it once: doit config memory=2' in twice.stderr


def test_doit_config_prints_valid_toml_with_each_value_s_origin(project):
    out = project.doit('config', 'cpu=3').stdout
    settings = tomllib.loads(out)
    assert (settings['run']['memory_gb'], settings['run']['cpu']) == (0.5, 3.0)
    assert settings['jobs']['ResultJob']['args'] == [10]
    lines = out.splitlines()
    assert 'memory_gb = 0.5  # pipeline.toml:11' in lines and 'cpu = 3.0  # command line' in lines


# --- doit clean, and what re-runs build_image -------------------------------------------------------------
def test_clean_removes_a_steps_targets_never_the_image(project, docker_client):
    with images_removed(project):
        clean_and_build_again(project, docker_client)


def clean_and_build_again(project, docker_client):
    project.doit('run_local', 'job=ResultJob')
    image_id = json.loads(project.read('build/ResultJob/image.json'))['image_id']
    runs = project.path('build/ResultJob/runs/local')
    assert runs.is_dir()
    cleaned = project.doit('clean', 'build_image:ResultJob', 'run_local:ResultJob')
    assert f"build_image:ResultJob - removing file '{project.path('build/ResultJob/image.json')}'" in cleaned.stdout
    assert not project.path('build/ResultJob/image.json').exists() and not runs.exists()
    assert project.path('build/ResultJob/context/Dockerfile').exists()  # another step's target
    assert docker_client.images.get(image_id).id == image_id  # never an image on the engine
    again = project.doit('run_local', 'job=ResultJob')
    assert ran(again.stdout, 'build_image:ResultJob') and not ran(again.stdout, 'sdist:ResultJob')


def test_a_changed_image_prefix_builds_the_image_again(project, docker_client):
    with images_removed(project):  # under both names
        project.doit('build_image', 'job=ResultJob')
        assert not ran(project.doit('build_image', 'job=ResultJob').stdout, 'build_image:ResultJob')
        renamed = project.doit('build_image', 'job=ResultJob', 'docker.image_prefix=tgux-')
        assert ran(renamed.stdout, 'build_image:ResultJob')
        assert json.loads(project.read('build/ResultJob/image.json'))['tag'] == 'tgux-resultjob:0.0.0'
        assert docker_client.images.get('tgux-resultjob:0.0.0').labels['tg_pipeline.project'] == project.id


# --- doit graph ---------------------------------------------------------------------------------------------
def graph_now(project, *args) -> dict:
    """step -> what `doit graph` says doit would do with it now; and the DOT file it wrote."""
    out = project.doit('graph', *args).stdout
    assert f'Task graph written to {project.path("build/graph.dot")}' in out
    if shutil.which('dot'):
        assert project.path('build/graph.png').read_bytes()[:4] == b'\x89PNG'
    lines = [line.split(None, 1) for line in out.splitlines() if line and line[0] != '.' and ':' in line.split()[0]]
    return {name: now for name, now in lines}


def test_graph_draws_the_chosen_job_and_marks_what_would_run_now(project):
    fresh = graph_now(project, 'job=ResultJob')
    assert list(fresh) == [f'{step}:ResultJob' for step in ('serialize', 'sdist', 'dockerfile', 'build_image',
                                                             'run_attached', 'run_local', 'push', 'run_remote',
                                                             'run_swarm')]  # no lifecycle step, no other job
    assert fresh['serialize:ResultJob'].startswith('runs now')
    assert fresh['run_local:ResultJob'] == 'runs whenever asked'
    dot = project.read('build/graph.dot')
    assert '"sdist:ResultJob" -> "build_image:ResultJob";' in dot and 'ExampleJob' not in dot
    assert '"serialize:ResultJob" [label="serialize:ResultJob\\nruns now: ' in dot
    project.doit('sdist', 'dockerfile', 'job=ResultJob')
    built = graph_now(project, 'job=ResultJob')
    assert [built[f'{s}:ResultJob'] for s in ('serialize', 'sdist', 'dockerfile')] == ['up to date'] * 3
    assert built['build_image:ResultJob'] == 'runs now (a target is missing)'
    new_args = graph_now(project, 'job=ResultJob', 'jobs.ResultJob.args=[5]')  # the job's settings changed
    assert new_args['serialize:ResultJob'].startswith('runs now')
    assert new_args['sdist:ResultJob'] == 'runs if a step before it changes its files (after serialize:ResultJob)'
    assert new_args['dockerfile:ResultJob'] == 'up to date'
    rerun = project.doit('sdist', 'job=ResultJob', 'jobs.ResultJob.args=[5]').stdout  # doit agrees
    assert ran(rerun, 'serialize:ResultJob') and ran(rerun, 'sdist:ResultJob')


def test_graph_shows_the_lifecycle_steps_and_the_files_when_asked(project):
    everything = graph_now(project, 'job=ResultJob', 'all=1', 'files=1')
    assert {'status:ResultJob', 'logs:ResultJob', 'stop:ResultJob', 'result:ResultJob'} <= set(everything)
    dot = project.read('build/graph.dot')
    assert '"jobs/result_job.py" -> "serialize:ResultJob" [style=dashed' in dot
    assert '"sdist:ResultJob" -> "build/ResultJob/context/resultjob__0_0_0-0.0.0.tar.gz" [style=dashed' in dot
    assert '"build/ResultJob/image.json" -> "push:ResultJob" [style=dashed' in dot
    assert '"sdist:ResultJob" -> "build_image:ResultJob";' in dot  # the steps' own edges stay
