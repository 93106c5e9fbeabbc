"""Bad input stops before anything is built, with an error that names the problem and the fix.

One fixture project per failure mode in tests/projects/ (undeclared_dependency,
unresolvable_dependency, by_value_job, raising_init, not_a_job, outside_roots); the cases that need no engine
are in tests/unit/test_bad_input.py, the unpicklable-attribute and outside-the-source-roots cases in
tests/unit/test_packaging.py, the config ones in tests/unit/test_config.py and test_cli_errors.py.
"""
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
    assert 'ERROR: pip cannot install the dependencies of tgtest-hello:0.0.1-deps (on this machine): ' in result.stderr
    assert '\x1b[' not in result.stdout + result.stderr and 'last output' not in result.stderr  # the log once
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


def test_by_value_code_on_another_python_is_refused(project_factory, docker_client, other_python_base, tmp_path):
    """Code pickled by value (the Python API's jobs, a notebook's) loads only on the Python that pickled it. A job of
    pipeline.toml holding a lambda travels as its reference (issue 22) and is built in the container: it runs."""
    import sys
    import cloudpickle
    from tg_pipeline.errors import PackagingError
    from tg_pipeline.job.checks import check_python_version
    tag, other = other_python_base
    here = '%d.%d' % sys.version_info[:2]
    payload = cloudpickle.dumps(lambda x: x * 3, protocol=4)
    with pytest.raises(PackagingError) as refused:
        check_python_version('Scaled', [payload], tag, docker_client, tmp_path / 'bp.json')
    assert f'this is Python {here}, base image {tag} has Python {other}' in refused.value.message
    assert f'use a base image with Python {here} (e.g. python:{here}-slim' in refused.value.hint
    project = project_factory('by_value_job')
    forget(docker_client, 'tgtest-scaled:0.0.1')
    ran = project.doit('run_local', 'job=Scaled', env={'TG_PIPELINE_BASE_IMAGE': tag})
    assert 'Result: 42' in ran.stdout
    forget(docker_client, 'tgtest-scaled:0.0.1')


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


def test_the_tip_for_a_package_next_to_the_roots_runs_in_the_image(project_factory, docker_client):
    """With the source_roots line of the TIP, lib/ travels and the job's `from lib.text import title` works in
    the container as here."""
    project = project_factory('outside_roots')
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', 'source_roots = ["jobs", "lib"]')
    result = project.doit('run_local', 'job=UsesLib')
    assert "Result: 'Hello From Lib'" in result.stdout
