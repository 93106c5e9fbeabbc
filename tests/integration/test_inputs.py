"""What a user's own code meets: absolute imports of the project's own packages (in the container as here,
and beside another version in one process), and return values whose type cannot be loaded here.

The packaging tests that need no engine (the sdist unpacked and run as the image runs it) are in
tests/unit/test_inputs.py; here, two versions installed with pip into one process, and runs on the engines.
"""
import sys
from pathlib import Path

import pytest

from conftest import REPO
from unit.test_inputs import python, sdist_of

RELATIVE_LOUD = '''
from . import util
from .helpers import fmt


class Loud:
    def __init__(self, text):
        self.text = text

    def run(self):
        return {'shout': util.shout(self.text), 'banner': fmt.banner(self.text), 'util': util.__name__}
'''


# --- absolute imports ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_versions_in_one_process_the_first_keeps_the_names(project_factory, tmp_path):
    """Through install_package_and_get_loader: the first version loaded owns the name "jobs"; a second whose
    code imports "jobs..." by absolute name is refused with an ImportError naming file, line and owner; a
    second that imports only relatively loads and runs beside the first."""
    project = project_factory('absolute_imports')
    first, second = sdist_of(project, '1.0.0'), sdist_of(project, '2.0.0')
    project.edit('jobs/helpers/fmt.py', 'from jobs.util import shout', 'from ..util import shout')
    project.write('jobs/loud.py', RELATIVE_LOUD)  # a third version that imports only relatively
    relative = sdist_of(project, '3.0.0')
    result = python(f'''
        from tg_pipeline.api import install_package_and_get_loader
        loaders = [install_package_and_get_loader(path, silent=True, target={str(tmp_path / 'site')!r})
                   for path in {[str(first), str(second), str(relative)]!r}]
        one = loaders[0].load_resource('job')
        print('first', one.run()['util'])
        try:
            loaders[1].load_resource('job')
        except ImportError as e:
            print('second refused:', e)
        three = loaders[2].load_resource('job')
        print('third', three.run()['util'], one.run()['util'])
        ''', tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith('loud:')]  # the job's own
    assert lines[0] == 'first loud__1_0_0.jobs.util'
    site = tmp_path / 'site'
    assert lines[1] == (f"second refused: {site / 'loud__2_0_0/jobs/loud.py'}:2 imports 'jobs.util' by its "
                        "absolute name, but in this process 'jobs' is the job package loud__1_0_0 (loaded first), "
                        "not this package's own loud__2_0_0.jobs: the import would run other code. Make it relative "
                        '(e.g. "from . import ..." or "from .x import ..."), or load loud__2_0_0 in a process of its '
                        'own')
    assert lines[2] == 'third loud__3_0_0.jobs.util loud__1_0_0.jobs.util'


@pytest.mark.slow
def test_a_local_package_of_that_name_keeps_it(project_factory, tmp_path):
    """In your project folder "jobs" is your own package: a job package whose code needs the name refuses to
    load rather than mix its modules with yours."""
    project = project_factory('absolute_imports')
    sdist = sdist_of(project)
    result = python(f'''
        from tg_pipeline.api import install_package_and_get_loader
        loader = install_package_and_get_loader({str(sdist)!r}, silent=True, target={str(tmp_path / 'site')!r})
        import jobs
        try:
            loader.load_resource('job')
        except ImportError as e:
            print(e)
        ''', project.root)
    assert result.returncode == 0, result.stderr
    assert f"in this process 'jobs' is the module {project.path('jobs/__init__.py')} (already loaded)" in result.stdout


def test_absolute_imports_run_attached_and_on_the_local_engine(project_factory, docker_client):
    project = project_factory('absolute_imports')
    attached = project.doit('run_attached', 'job=Loud')
    assert "'same_objects': True, 'util': 'jobs.util'}" in attached.stdout
    local = project.doit('run_local', 'job=Loud')
    assert 'loud: HELLO! hello... == HELLO! ==' in local.stdout
    assert "'same_objects': True, 'util': 'loud__0_0_1.jobs.util'}" in local.stdout


@pytest.mark.remote
def test_absolute_imports_run_on_the_remote_engine(project_factory, remote_docker):
    project = project_factory('absolute_imports')
    result = project.doit('run_remote', 'job=Loud')
    assert 'loud: HELLO! hello... == HELLO! ==' in result.stdout
    assert "'same_objects': True, 'util': 'loud__0_0_1.jobs.util'}" in result.stdout
    assert remote_docker.containers.list(all=True, filters={'label': project.labels('Loud')}) == []


# --- return values this Python cannot load -------------------------------------------------------------

def test_a_value_of_a_package_missing_here_still_succeeds_with_a_summary(project_factory, docker_client):
    project = project_factory('foreign_result')
    result = project.doit('run_local', 'job=Table')  # exit 0: the run went well
    lines = result.stdout.splitlines()
    summary = next(line for line in lines if line.startswith('Result: '))
    assert summary.startswith("Result: the value holds a tabulate.Line that cannot be loaded here "
                              "(ModuleNotFoundError: No module named 'tabulate'): ")
    size, path = summary.split('): ', 1)[1].split(' bytes in ')
    assert Path(path).name == 'result.pkl' and Path(path).stat().st_size == int(size)
    assert Path(path).parent.parent == project.path('build/Table/runs/local')
    assert lines[lines.index(summary) + 1] == ("TIP: pip install tabulate (the package that provides the module "
                                               "'tabulate') here to load it; the image has it")
    assert 'Traceback' not in result.stderr and 'ERROR' not in result.stderr
    again = project.doit('result', 'job=Table')  # the same from the collected run
    assert summary in again.stdout and 'TIP: pip install tabulate ' in again.stdout


def test_a_numpy_integer_with_numpy_absent_here_is_summed_up(project_factory, docker_client):
    import importlib.util
    assert importlib.util.find_spec('numpy') is None  # the premise: numpy is in the job's image only
    project = project_factory('foreign_result')
    result = project.doit('run_local', 'job=NumpyValue')  # exit 0: the run went well
    lines = result.stdout.splitlines()
    summary = next(line for line in lines if line.startswith('Result: '))
    assert summary.startswith('Result: the value holds a numpy.') and 'cannot be loaded here' in summary
    assert lines[lines.index(summary) + 1].startswith('TIP: pip install numpy ')
    assert 'Traceback' not in result.stderr and 'ERROR' not in result.stderr


def test_the_python_api_raises_result_not_loadable(tmp_path, docker_client):
    import uuid
    from tg_pipeline import Containering, Packaging, SSHDockerConfig, SSHDockerOptions, SSHLocalExecutor
    from tg_pipeline.errors import PipelineError, ResultNotLoadable
    name = f'foreignres_{uuid.uuid4().hex[:8]}'
    (tmp_path / 'src' / name).mkdir(parents=True)
    (tmp_path / 'src' / name / '__init__.py').write_text('')
    (tmp_path / 'src' / name / 'jobs.py').write_text(
        (REPO / 'tests/projects/foreign_result/jobs/table.py').read_text())
    sys.path.insert(0, str(tmp_path / 'src'))
    try:
        job = __import__(f'{name}.jobs', fromlist=['Table']).Table()
    finally:
        sys.path.remove(str(tmp_path / 'src'))
    packaging = Packaging('foreignresult', '0.0.1', dict(job=job))
    packaging.build_dir, packaging.dependencies = str(tmp_path / 'build'), ['tabulate==0.9.0']
    containering = Containering.from_packaging(packaging)
    containering.silent, containering.image_name = True, 'tgtest-foreignresult'
    executor = SSHLocalExecutor(SSHDockerConfig(packaging, containering, SSHDockerOptions()))
    with pytest.raises(ResultNotLoadable) as info:
        executor.execute()
    error = info.value
    assert isinstance(error, PipelineError)
    assert (error.module, error.needs) == ('tabulate', 'tabulate.Line')
    assert error.path.is_file() and error.path.parent.parent == tmp_path / 'build' / 'foreignresult' / 'runs' / 'local'
    assert 'pip install tabulate' in error.hint
    with pytest.raises(ResultNotLoadable):
        executor.result()  # the collected run: the same
