"""Variables named in env but unset here: an error before a run starts (env_missing = "error", the default),
or allowed (``"ignore"``), from pipeline.toml, the command line, a job's table and the Python API (no Docker)."""
import textwrap

import pytest

from tg_pipeline import Containering, Packaging, SSHDockerConfig, SSHDockerOptions, config
from tg_pipeline.hosts import engine, host as hosts
from tg_pipeline.workflow.run_steps import check_env, run_local, run_remote, run_swarm
from tg_pipeline.workflow.context import Context
from tg_pipeline.api import pipeline_config
from tg_pipeline.errors import ConfigError

PIPELINE = '''\
[run]
env = ["TOKEN_A"]

[jobs.Train]
factory = "jobs.train:Train"
env = ["PLAIN_B"]
'''


def context(tmp_path, text=PIPELINE, **overrides):
    path = tmp_path / 'pipeline.toml'
    path.write_text(textwrap.dedent(text))
    return Context(config.load(path, overrides=overrides, environ={}), dict(overrides))


def test_unset_variables_are_an_error_naming_them_and_both_fixes(tmp_path):
    ctx = context(tmp_path)
    assert ctx.config.run.env_missing == 'error' and ctx.config.job('Train').run.env_missing == 'error'
    with pytest.raises(ConfigError) as info:
        check_env(ctx, 'Train', environ={'PLAIN_B': 'x', 'OTHER': 'y'})
    text = info.value.render()
    assert f'job Train passes TOKEN_A from this environment (env, set at {ctx.config.path}:2 + ' in text
    assert 'TIP: set it first: export TOKEN_A=...; or, to run without, env_missing = "ignore" in [run]' in text
    with pytest.raises(ConfigError, match='passes TOKEN_A, PLAIN_B from this environment') as info:
        check_env(ctx, 'Train', environ={})
    assert 'TIP: set them first: export TOKEN_A=... PLAIN_B=...;' in info.value.render()
    check_env(ctx, 'Train', environ={'TOKEN_A': '', 'PLAIN_B': 'x'})  # set, even empty, is set


@pytest.mark.parametrize('text, overrides', [
    (PIPELINE.replace('[run]\n', '[run]\nenv_missing = "ignore"\n'), {}),
    (PIPELINE + 'env_missing = "ignore"\n', {}),
    (PIPELINE, {'env_missing': 'ignore'}),
    (PIPELINE, {'jobs.Train.env_missing': 'ignore'}),
    (PIPELINE.replace('[run]\n', '[run]\nenv_missing = "ignore"\n'), {'jobs.Train.env_missing': 'ignore'}),
])
def test_ignore_from_the_file_a_job_or_the_command_line_allows_it(tmp_path, text, overrides):
    ctx = context(tmp_path, text, **overrides)
    assert ctx.config.job('Train').run.env_missing == 'ignore'
    check_env(ctx, 'Train', environ={})


def test_the_command_line_wins_over_the_file_and_a_job_over_run(tmp_path):
    ignoring = PIPELINE.replace('[run]\n', '[run]\nenv_missing = "ignore"\n')
    assert context(tmp_path, ignoring, env_missing='error').config.job('Train').run.env_missing == 'error'
    own = PIPELINE.replace('[run]\n', '[run]\nenv_missing = "ignore"\n') + 'env_missing = "error"\n'
    assert context(tmp_path, own).config.job('Train').run.env_missing == 'error'
    with pytest.raises(ConfigError, match='run.env_missing must be "error" or "ignore", not \'warn\''):
        context(tmp_path, env_missing='warn')


@pytest.mark.parametrize('step', [run_local, run_remote, run_swarm])
def test_every_container_run_checks_before_it_reaches_a_host(tmp_path, monkeypatch, step):
    ctx = context(tmp_path, PIPELINE + '[registry]\naddress = "registry.example:5000"\n')
    monkeypatch.delenv('TOKEN_A', raising=False)
    monkeypatch.setattr(hosts, 'open_host', lambda *a, **k: pytest.fail('a host was opened'))
    monkeypatch.setattr(engine, 'local_engine', lambda *a, **k: pytest.fail('the engine was asked'))
    with pytest.raises(ConfigError, match='passes TOKEN_A'):
        step(ctx, 'Train')


def test_the_python_api_has_the_same_default_and_names_its_own_fix(tmp_path):
    def api(**options):
        packaging = Packaging('train', '1.0', dict(job=len))
        packaging.build_dir = str(tmp_path / 'build')
        return pipeline_config(SSHDockerConfig(packaging, Containering.from_packaging(packaging),
                                               SSHDockerOptions(['TOKEN_A'], **options)), [])
    default = api()
    assert default.job('train').run.env_missing == 'error'
    with pytest.raises(ConfigError) as info:
        check_env(Context(default), 'train', environ={})
    assert "TIP: set it first: export TOKEN_A=...; or, to run without, SSHDockerOptions(..., env_missing='ignore')" \
        in info.value.render()
    check_env(Context(api(env_missing='ignore')), 'train', environ={})
