"""Bad input stops before anything is built, with an error that names the problem and the fix.

One fixture project per failure mode in tests/projects/ (undeclared_dependency,
unresolvable_dependency, by_value_job, raising_init, not_a_job, outside_roots); the unpicklable-attribute and
outside-the-source-roots cases are in test_packaging.py, the config ones in
test_config.py and test_cli_errors.py.
"""
import re

import pytest


def forget(docker_client, reference):
    """A test of "nothing was built" starts without that image (an earlier session may have built it)."""
    import docker
    try:
        docker_client.images.remove(reference, force=True)
    except docker.errors.ImageNotFound:
        pass


def no_image(docker_client, reference):
    import docker
    try:
        docker_client.images.get(reference)
    except docker.errors.ImageNotFound:
        return True
    return False


def test_undeclared_dependency_is_named_before_the_build(project_factory, docker_client):
    project = project_factory('undeclared_dependency')
    forget(docker_client, 'tgtest-render:0.0.1')
    result = project.doit('run_local', 'job=Render', check=False)
    assert result.returncode != 0
    assert "ERROR: job Render imports 'jinja2' (in " in result.stderr
    assert 'jobs/render.py:1)' in result.stderr
    assert 'but not declared as a dependency' in result.stderr
    assert 'TIP: add "jinja2==' in result.stderr and 'to dependencies in [package]' in result.stderr
    assert 'build_image:Render  ' not in result.stdout
    assert no_image(docker_client, 'tgtest-render:0.0.1')
    # the fix the TIP names works
    project.edit('pipeline.toml', 'version = "0.0.1"', 'version = "0.0.1"\ndependencies = ["jinja2"]')
    fixed = project.doit('run_local', 'job=Render')
    assert "Result: '1'" in fixed.stdout


def test_unresolvable_requirement_quotes_pip(project_factory, docker_client):
    project = project_factory('unresolvable_dependency')
    forget(docker_client, 'tgtest-hello:0.0.1')
    result = project.doit('build_image', 'job=Hello', check=False)
    assert result.returncode != 0
    assert 'ERROR: pip cannot install the dependencies of tgtest-hello:0.0.1-deps: ' in result.stderr
    assert 'No matching distribution found for tg-pipeline-no-such-distribution==1.0' in result.stderr
    assert 'TIP: fix the name or version in dependencies of pipeline.toml' in result.stderr
    # a failed build prints its whole log, though a good one prints none by default
    assert '--- build log of tgtest-hello:0.0.1-deps ---\nStep 1/' in result.stdout
    assert 'RUN pip install' in result.stdout and '--- end of build log ---' in result.stdout
    assert no_image(docker_client, 'tgtest-hello:0.0.1')


@pytest.fixture(scope='session')
def other_python_base(docker_client):
    """A stand-in for an official python:3.X-slim of another minor version: those images declare
    their version as ENV PYTHON_VERSION, which is what tg_pipeline reads first."""
    import io
    import sys
    other = '3.%d' % (sys.version_info[1] + 1)
    dockerfile = f'FROM python:3.11-slim\nENV PYTHON_VERSION={other}.0\n'.encode()
    tag = f'tgtest-python-other:{other}'
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    return tag, other


def test_by_value_code_on_another_python_is_refused(project_factory, docker_client, other_python_base):
    import sys
    tag, other = other_python_base
    here = '%d.%d' % sys.version_info[:2]
    project = project_factory('by_value_job')
    forget(docker_client, 'tgtest-scaled:0.0.1')
    result = project.doit('run_local', 'job=Scaled', env={'TG_PIPELINE_BASE_IMAGE': tag}, check=False)
    assert result.returncode != 0
    assert f'this is Python {here}, base image {tag} has Python {other}' in result.stderr
    assert f'TIP: use a base image with Python {here} (e.g. python:{here}-slim' in result.stderr
    assert no_image(docker_client, 'tgtest-scaled:0.0.1')
    # with the matching base image the same payload runs
    fixed = project.doit('run_local', 'job=Scaled')
    assert 'Result: 42' in fixed.stdout


def test_by_reference_job_may_use_another_python(project_factory, docker_client, other_python_base):
    """Only code pickled by value ties the payload to one Python: a plain job is not refused."""
    tag, _ = other_python_base
    project = project_factory('undeclared_dependency')
    project.edit('pipeline.toml', 'version = "0.0.1"', 'version = "0.0.1"\ndependencies = ["jinja2"]')
    result = project.doit('dockerfile', 'job=Render', env={'TG_PIPELINE_BASE_IMAGE': tag})
    assert f'FROM {tag}' in project.read('build/Render/context/Dockerfile')
    from tg_pipeline.job.checks import check_python_version, pickled_by_value
    payload = project.path('build/Render/resources/job.pkl')
    project.doit('serialize', 'job=Render')
    assert not pickled_by_value(payload.read_bytes())
    check_python_version('Render', [payload.read_bytes()], tag, docker_client, project.path('build/bp.json'))
    assert result.returncode == 0


def user_error(project, job):
    """The failed serialize of ``job``: our one ERROR/TIP paragraph, and the frames it shows."""
    result = project.doit('serialize', f'job={job}', check=False)
    assert result.returncode == 1
    paragraph = result.stderr[result.stderr.index('ERROR: '):]
    assert result.stderr.count('ERROR: ') == 1 and paragraph.count('\nTIP: ') == 1, result.stderr
    for forbidden in ('Traceback', 'tg_pipeline', 'TaskError', 'site-packages', '<frozen'):
        assert forbidden not in result.stderr, result.stderr
    files = re.findall(r'File "([^"]+)"', paragraph)
    assert files and all(f.startswith(str(project.root) + '/jobs/') for f in files), paragraph
    assert not project.path(f'build/{job}/resources/job.pkl').exists()
    return paragraph


def test_an_init_that_raises_shows_only_the_users_frames(project_factory):
    project = project_factory('raising_init')
    paragraph = user_error(project, 'Raising')
    assert paragraph.startswith(f"ERROR: {project.path('pipeline.toml')}:9, key 'jobs.Raising.factory': factory "
                                "'jobs.raising:Trainer' raised ValueError: rate must be positive, not -1\n")
    assert f'File "{project.path("jobs/raising.py")}", line 12, in __init__' in paragraph
    assert f'File "{project.path("jobs/raising.py")}", line 6, in checked_rate' in paragraph
    assert f'TIP: fix it in your code at {project.path("jobs/raising.py")}:6: ' in paragraph
    project.edit('pipeline.toml', 'rate = -1', 'rate = 0.5')  # the fix: serialize works
    project.doit('serialize', 'job=Raising')
    assert project.path('build/Raising/resources/job.pkl').exists()


def test_a_module_that_fails_to_import_shows_only_the_users_frames(project_factory):
    project = project_factory('raising_init')
    paragraph = user_error(project, 'BrokenImport')
    assert "importing jobs.broken_import (factory 'jobs.broken_import:Job') raised KeyError: 'epoch'" in paragraph
    assert f'File "{project.path("jobs/broken_import.py")}", line 3, in <module>' in paragraph


def test_a_factory_that_returns_no_job_is_refused(project_factory):
    project = project_factory('not_a_job')
    result = project.doit('serialize', 'job=Settings', check=False)
    assert result.returncode == 1
    assert f"ERROR: {project.path('pipeline.toml')}:9, key 'jobs.Settings.factory': factory 'jobs.settings:make' " \
           "returned a dict ({'epochs': 3, 'rate': 0.1}), which is no job: it has no run() method and is not " \
           "callable" in result.stderr
    assert f'TIP: make {project.path("jobs/settings.py")}:4 return the job: an object with a run() method' \
        in result.stderr
    assert result.stderr.count('ERROR: ') == 1 and 'Traceback' not in result.stderr
    assert not project.path('build/Settings/resources/job.pkl').exists()


def test_a_module_next_to_the_source_roots_is_refused_before_the_build(project_factory):
    """helpers.py in the project root imports fine here (the project folder is on sys.path) but is not in the
    sdist: the import check names it, its file and the fix, and the fix works."""
    project = project_factory('outside_roots')
    result = project.doit('sdist', 'job=UsesHelpers', check=False)
    assert result.returncode == 1
    assert (f"ERROR: job UsesHelpers imports 'helpers' (in {project.path('jobs/uses_helpers.py')}:2) from "
            f"{project.path('helpers.py')}, which is in the project folder but outside the source roots (jobs): the "
            "image would not have it") in result.stderr
    assert ('TIP: move helpers.py into a folder of its own, helpers/__init__.py, and add that folder to source_roots '
            'in [package] of pipeline.toml: source_roots = ["jobs", "helpers"]') in result.stderr
    assert result.stderr.count('ERROR: ') == 1 and 'Traceback' not in result.stderr
    assert not project.path('build/UsesHelpers/context').exists()
    project.path('helpers').mkdir()
    project.path('helpers.py').rename(project.path('helpers/__init__.py'))
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', 'source_roots = ["jobs", "helpers"]')
    project.doit('sdist', 'job=UsesHelpers')


def test_a_package_next_to_the_source_roots_is_refused_before_the_build(project_factory):
    project = project_factory('outside_roots')
    result = project.doit('sdist', 'job=UsesLib', check=False)
    assert result.returncode == 1
    assert (f"ERROR: job UsesLib imports 'lib' (in {project.path('jobs/uses_lib.py')}:2) from "
            f"{project.path('lib/__init__.py')}, which is in the project folder but outside") in result.stderr
    assert 'TIP: add its folder to source_roots in [package] of pipeline.toml: source_roots = ["jobs", "lib"]' \
        in result.stderr
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', 'source_roots = ["jobs", "lib"]')  # the TIP
    project.doit('sdist', 'job=UsesLib')
    assert project.path('build/UsesLib/context/useslib__0_0_1-0.0.1.tar.gz').exists()


def test_the_tip_for_a_package_next_to_the_roots_runs_in_the_image(project_factory, docker_client):
    """With the source_roots line of the TIP, lib/ travels and the job's `from lib.text import title` works in
    the container as here."""
    project = project_factory('outside_roots')
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', 'source_roots = ["jobs", "lib"]')
    result = project.doit('run_local', 'job=UsesLib')
    assert "Result: 'Hello From Lib'" in result.stdout
