"""Bad input through the doit command line: one ERROR/TIP paragraph, non-zero exit, nothing run or lost."""
import pytest

from conftest import job_names


@pytest.mark.parametrize('name, expected', [
    ('bad_syntax', 'pipeline.toml:5: not valid TOML'),
    ('unknown_key', "pipeline.toml:6, key 'run.memroy_gb': unknown key 'memroy_gb' in [run]"),
    ('wrong_type', "pipeline.toml:5, key 'run.cpu': run.cpu must be a number, not 'two'"),
])
def test_bad_file_stops_before_any_task(project_factory, name, expected):
    project = project_factory(name)
    before = project.read('pipeline.toml')
    result = project.doit('run_local', 'job=ExampleJob', check=False)
    assert result.returncode == 2
    assert expected in result.stderr
    assert 'Traceback' not in result.stderr
    assert result.stdout == ''  # no task started
    assert project.read('pipeline.toml') == before  # the user's file is left as it was
    assert not (project.root / 'build' / 'ExampleJob').exists()


@pytest.mark.parametrize('args, edit, expected', [
    (['version=../../../x'], None, "key 'package.version': package.version = '../../../x' is not a valid version"),
    (['version=1.0.0-beta+x'], None, "package.version = '1.0.0-beta+x' is not a valid version: it is no Docker tag"),
    (['version=1:2'], None, "package.version = '1:2' is not a valid version: it is no PEP 440 version"),
    (['version='], None, "package.version = '' is not a valid version: it is empty"),
    (['docker.image_prefix=Team/'], None, "docker.image_prefix = 'Team/' is not a valid image prefix"),
    ([], ('version = "0.0.0"', 'version = "../../../x"'), "pipeline.toml:2, key 'package.version'"),
    ([], ('version = "0.0.0"', 'version = "1.0.0-beta+x"'), "pipeline.toml:2, key 'package.version'"),
    ([], ('image_prefix = "tgtest-"', 'image_prefix = "Team/"'), "pipeline.toml:6, key 'docker.image_prefix'"),
    ([], ('[jobs.ExampleJob]', '[jobs."ExampleJöb"]'), "key 'jobs.ExampleJöb': job name 'ExampleJöb' must be"),
])
def test_a_bad_name_or_version_stops_before_any_task(project, args, edit, expected):
    """Nothing is written, neither in build/ nor outside the project (a version of ../../../x once put the sdist
    there)."""
    if edit:
        project.edit('pipeline.toml', *edit)
    result = project.doit('sdist', 'job=ExampleJob', *args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert result.stderr.count('ERROR: ') == 1 and result.stderr.count('\nTIP: e.g. ') + result.stderr.count(
        '\nTIP: rename') == 1, result.stderr
    assert ('on the command line' in result.stderr) == bool(args)
    assert 'Traceback' not in result.stderr and result.stdout == ''
    assert not (project.root / 'build').exists()
    assert list(project.root.parent.rglob('*.tar.gz')) == []


def test_unknown_job_on_the_command_line(project):
    result = project.doit('run_local', 'job=ExampleJbo', check=False)
    assert result.returncode == 2
    assert "ERROR: " in result.stderr and "unknown job 'ExampleJbo'" in result.stderr
    assert f'TIP: add a [jobs.ExampleJbo] table to pipeline.toml or pick one of: {job_names()}' in result.stderr
    assert 'ExampleJob, FailingJob' in job_names()


def test_missing_class_names_the_factory_key_and_line(project_factory):
    project = project_factory('missing_class')
    result = project.doit('serialize', 'job=ExampleJob', check=False)
    assert result.returncode != 0
    assert "pipeline.toml:5, key 'jobs.ExampleJob.factory': factory 'jobs.example_job:NoSuchJob': " \
           "module 'jobs.example_job' has no 'NoSuchJob'" in result.stderr
    assert 'TIP: check the class or function name defined in' in result.stderr
    assert not (project.root / 'build' / 'ExampleJob' / 'resources' / 'job.pkl').exists()


def test_bad_command_line_value(project):
    result = project.doit('run_local', 'job=ExampleJob', 'memory=lots', check=False)
    assert result.returncode == 2
    assert "ERROR: key 'memory': memory must be a number, not 'lots'" in result.stderr


def test_list_shows_one_line_docs(project):
    result = project.doit('list', '--all')
    lines = result.stdout.splitlines()
    assert any(l.startswith('run_local') and 'local Docker engine' in l for l in lines)
    assert any(l.startswith('build_image') and 'Docker SDK' in l for l in lines)


def test_graph_writes_dot_with_the_task_edges(project):
    project.doit('graph')
    dot = project.read('build/graph.dot')
    assert '"serialize:ExampleJob" -> "sdist:ExampleJob";' in dot
    assert '"sdist:ExampleJob" -> "build_image:ExampleJob";' in dot
    assert '"dockerfile:ExampleJob" -> "build_image:ExampleJob";' in dot
    assert '"build_image:ExampleJob" -> "run_local:ExampleJob";' in dot
    import shutil
    if shutil.which('dot'):
        assert project.path('build/graph.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.parametrize('command', [('list',), ('help', 'run_local')])
def test_a_printing_command_whose_reader_is_gone_ends_without_a_traceback(project, command):
    """``doit list | head -1``: the reader closes the pipe; the command ends as ls or cat do (SIGPIPE)."""
    import signal
    process = project.popen(*command)
    process.stdout.close()  # before the command (a Python process importing doit) can write anything
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == -signal.SIGPIPE, stderr
    assert 'Traceback' not in stderr and 'BrokenPipeError' not in stderr
