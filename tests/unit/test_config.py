"""pipeline.toml: defaults, overrides, and one clear error (file, key, line, tip) per kind of mistake."""
import sys

import pytest

from tg_pipeline import config
from tg_pipeline.errors import ConfigError

from conftest import PROJECTS, job_names


def load(name='basic', **kw):
    return config.load(PROJECTS / name / 'pipeline.toml', **kw)


def test_basic_project_is_merged_with_defaults():
    c = load(environ={})
    job = c.job('ExampleJob')
    assert job.module == 'examplejob__0_0_0'
    assert list(job.args) == [['EXAMPLE_VARIABLE']]
    assert (job.run.cpu, job.run.memory_gb) == (1.0, 0.5)
    sleep = c.job('SleepJob')
    assert (sleep.run.cpu, sleep.run.memory_gb) == (0.5, 0.25)  # the job's own table wins over [run]
    assert c.base_image == 'python:%d.%d-slim' % sys.version_info[:2]
    assert list(c.package.source_roots) == ['jobs']


def test_environment_then_command_line_override_the_file():
    c = load(environ={'TG_PIPELINE_BASE_IMAGE': 'my/base:1'}, overrides={'memory': '2', 'run.cpu': '0.5'})
    assert c.base_image == 'my/base:1'
    assert c.job('SleepJob').run.memory_gb == 2  # the command line wins over the job's table
    assert c.job('ExampleJob').run.cpu == 0.5
    assert load(environ={}, overrides={'base_image': 'other:2'}).base_image == 'other:2'


def test_module_names_are_unique_per_version():
    assert config.module_name('examplejob', '0.0.0') == 'examplejob__0_0_0'
    assert config.module_name('my-job', '1.2.3rc1') == 'my_job__1_2_3rc1'


@pytest.mark.parametrize('name, key, line, words', [
    ('bad_syntax', None, 5, 'not valid TOML'),
    ('unknown_key', 'run.memroy_gb', 6, "unknown key 'memroy_gb'"),
    ('wrong_type', 'run.cpu', 5, 'must be a number'),
    ('bad_factory', 'jobs.ExampleJob.factory', 5, 'is not "module.path:Name"'),
])
def test_bad_files_name_file_key_and_line(name, key, line, words):
    with pytest.raises(ConfigError) as info:
        load(name)
    error = info.value
    assert error.file.endswith(f'{name}/pipeline.toml')
    assert error.line == line
    assert error.key == key
    assert words in error.message
    assert f'pipeline.toml:{line}' in error.render()
    assert error.render().startswith('ERROR: ')


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        load('unknown_key')
    assert 'TIP: known keys of [run]: env, cpu, memory_gb, on_interrupt' in info.value.render()


def test_unknown_job_names_the_known_ones():
    with pytest.raises(ConfigError) as info:
        load().job('Nope')
    assert "unknown job 'Nope'" in info.value.message
    assert f'the jobs defined are: {job_names()}' in info.value.message


@pytest.mark.parametrize('overrides, words', [
    ({'memory': 'lots'}, 'memory must be a number'),
    ({'memory': '-1'}, 'memory_gb must be 0 (no limit) or positive'),
    ({'memory': '0.001'}, 'below the 6 MiB'),
    ({'memroy': '1'}, 'unknown command-line setting memroy=1'),
])
def test_bad_command_line_values(overrides, words):
    with pytest.raises(ConfigError) as info:
        load(overrides=overrides)
    assert words in info.value.message


def test_secret_looking_names_are_masked():
    shown = config.shown_env(['API_TOKEN', 'DB_PASSWORD', 'AWS_SECRET_ACCESS_KEY', 'PLAIN'],
                             {'API_TOKEN': 't', 'DB_PASSWORD': 'p', 'AWS_SECRET_ACCESS_KEY': 'k', 'PLAIN': 'v'})
    assert shown == {'API_TOKEN': '***', 'DB_PASSWORD': '***', 'AWS_SECRET_ACCESS_KEY': '***', 'PLAIN': 'v'}
