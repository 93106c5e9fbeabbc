"""What a new user meets in the first hour: the wheel installs and works outside this checkout, a container run's
result at `doit -v 0`, and `doit clean` (never the image). (`doit help`, settings on the command line,
`doit config`, an attached run's result at `doit -v 0`, `doit graph`: tests/unit/test_ux.py.)"""
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, ran

from .conftest import STATE

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


def test_the_wheel_installs_and_runs_a_new_project_everywhere(docker_client, target, installed,  # noqa: F811
                                                             tmp_path):
    project = tmp_path / 'first_project'
    project.mkdir()
    where = in_venv(installed, project, 'python', '-c', 'import tg_pipeline, sys; print(tg_pipeline.__file__)')
    assert Path(where.stdout.strip()).is_relative_to(installed)  # not this checkout
    assert not Path(where.stdout.strip()).is_relative_to(REPO)
    init = in_venv(installed, project, 'tg-pipeline', 'init')
    assert 'wrote dodo.py' in init.stdout and 'next: doit run_local job=HelloJob' in init.stdout
    remote = [f'host={target.remote}', f'registry={target.registry}']
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
