"""Each setting is defined once, as a field of its section's dataclass: a new run setting is one field, and the
configuration ([run], a job's table, the command line), the Python API's keyword, ``doit help``, ``doit config``,
the reference and the job merge all pick it up. Also the precedence function, the API's unknown keyword, env
files read with python-dotenv, and the Markdown reference."""
import dataclasses
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tg_pipeline.api import Containering, Packaging, SSHDockerConfig, SSHDockerOptions, pipeline_config
from tg_pipeline.config import describe, from_mapping, reference, schema
from tg_pipeline.config.build import Given, _At, _Source, merge
from tg_pipeline.config.schema import JOIN, MERGE, RunSettings, setting
from tg_pipeline.config.values import read_env_file
from tg_pipeline.errors import ConfigError
from tg_pipeline.runs.resources import env_file_values
from tg_pipeline.workflow import params


@dataclasses.dataclass(frozen=True)
class WithNice(RunSettings):
    """[run] with one more setting, as one more field of RunSettings would be."""
    nice: int = setting(0, short='nice', minimum='0', help='the CPU niceness of the job\'s processes')
    volumes: tuple[str, ...] = setting((), combine=JOIN, help='more named volumes')


@pytest.fixture
def nice(monkeypatch):
    monkeypatch.setitem(schema.SECTIONS, 'run', WithNice)


def test_a_new_run_setting_is_one_field(nice, tmp_path):
    data = {'run': {'nice': 5, 'volumes': ['a']},
            'jobs': {'A': {'factory': 'a:A', 'nice': 3, 'volumes': ['b']}, 'B': {'factory': 'b:B'}}}
    c = from_mapping(data, path=tmp_path / 'pipeline.toml', environ={})
    assert (c.run.nice, c.job('A').run.nice, c.job('B').run.nice) == (5, 3, 5)  # the job's own wins
    assert c.job('A').run.volumes == ('a', 'b') and c.job('B').run.volumes == ('a',)  # joined, as its combine says
    assert c.origins['jobs.A.nice'] == c.origins['jobs.B.nice'] == 'Python API'
    line = from_mapping(data, path=tmp_path / 'pipeline.toml', environ={}, overrides={'nice': '7', 'jobs.B.nice': '9'})
    assert (line.job('A').run.nice, line.job('B').run.nice) == (7, 9)  # its short name; the command-line rule
    assert line.origins['jobs.A.nice'] == 'command line'
    with pytest.raises(ConfigError, match='run.nice must be 0 or positive, not -1'):  # its bound
        from_mapping({'run': {'nice': -1}}, path=tmp_path / 'x')
    with pytest.raises(ConfigError, match='nice must be an integer'):
        from_mapping({}, path=tmp_path / 'x', overrides={'nice': 'high'})
    # the Python API: a keyword
    packaging = Packaging('scaled', '0.1.0', {'job': 1})
    api = pipeline_config(SSHDockerConfig(packaging, Containering('scaled', '0.1.0'), SSHDockerOptions(nice=4)), [])
    assert api.job('scaled').run.nice == 4
    # doit help, doit config and the reference
    helps = {p['name']: p['help'] for p in params.settings(c, 'A')}
    assert helps['nice'].startswith('the CPU niceness of the job\'s processes (as run.nice); now 5')
    assert helps['jobs.A.nice'].startswith('the CPU niceness of the job\'s processes (default: run.nice); now 3')
    assert tomllib.loads(describe(c))['jobs']['A']['nice'] == 3
    assert '| `nice` | integer | `0` | `nice=`, `run.nice=` |' in reference.markdown()


def test_unknown_api_keyword_is_one_paragraph_naming_the_known_ones():
    with pytest.raises(ConfigError) as info:
        SSHDockerOptions(['A'], gpu=1)
    assert info.value.render().splitlines() == [
        "ERROR: Python API: SSHDockerOptions got an unknown keyword 'gpu'",
        'TIP: did you mean gpus? the keywords it takes: env, cpu, memory_gb, on_interrupt, gpus, shm_gb, ipc, '
        'max_runtime_s, mounts, caches, ports, env_files, max_concurrent, fail_fast, gpu_share, gpu_wait, secret_env']
    with pytest.raises(ConfigError, match='got both cpu_limit and cpu'):
        SSHDockerOptions([], True, 2, cpu=3)
    options = SSHDockerOptions(['A'], True, 2, 0.5, 'ignore', gpus='all', on_interrupt='detach')
    assert (options.cpu_limit, options.memory_limit_in_gygabytes, options.gpus) == (2, 0.5, 'all')
    assert SSHDockerOptions(env=['B'], memory_gb=1).env_variables_to_propagate == ['B']


def test_the_python_api_sets_run_only_settings_in_run(tmp_path):
    packaging = Packaging('scaled', '0.1.0', {'job': 1})
    options = SSHDockerOptions(['A'], cpu_limit=2, on_interrupt='detach')
    c = pipeline_config(SSHDockerConfig(packaging, Containering('scaled', '0.1.0'), options), [])
    assert c.run.on_interrupt == 'detach' and c.job('scaled').run.cpu == 2 and c.job('scaled').run.env == ('A',)


def at(label: str) -> _At:
    return _At(_Source(label), '', None)


def test_merge_is_the_precedence_of_every_layer():
    cpu = schema._specs(RunSettings)['cpu']
    layers = [Given('default', 0.0, at('default')), Given('section', 1.0, at('file:7')),
              Given('job', 2.0, at('file:14')), Given('section command line', 4.0, at('command line'))]
    assert merge(cpu, layers[:3]) == (2.0, 'file:14', layers[2].at)  # the job's table over [run]
    assert merge(cpu, reversed(layers)).value == 4.0  # [run] on the command line over the job's table
    assert merge(cpu, [*layers, Given('job command line', 3.0, at('command line'))]).value == 3.0
    mounts = schema._specs(RunSettings)['mounts']
    joined = merge(mounts, [Given('default', (), at('default')), Given('section', ('/a:/a',), at('file:3')),
                            Given('job', ('/b:/b', '/a:/a'), at('file:9'))])
    assert joined[:2] == (('/a:/a', '/b:/b'), 'file:3 + file:9')
    caches = schema._specs(RunSettings)['caches']
    assert caches.meta['combine'] == MERGE
    merged = merge(caches, [Given('default', {}, at('default')), Given('section', {'pip': '/p'}, at('file:4')),
                            Given('section command line', '/q', at('command line'), 'pip'),
                            Given('job command line', '/h', at('command line'), 'hf')])
    assert dict(merged.value) == {'pip': '/q', 'hf': '/h'} and merged.origin == 'file:4 + command line'
    version = schema._specs(schema.JobConfig)['version']
    assert merge(version, [Given('default', '0.0.0', at('default')),
                           Given('section command line', '2.0', at('command line')),
                           Given('job', '1.0', at('file:5'))]).value == '1.0'  # OWN: the job's own always


def test_env_files_are_read_with_dotenv_syntax_without_expansion(tmp_path):
    path = tmp_path / 'secrets.env'
    path.write_text('# tokens\nexport HF_TOKEN="hf_abc=123"\nPLAIN=a b\n\nHOME_TOO=${HOME}\nQUOTED=\'x # y\'\n'
                    'MULTI="one\\ntwo"\n')
    assert read_env_file(path) == {'HF_TOKEN': 'hf_abc=123', 'PLAIN': 'a b', 'HOME_TOO': '${HOME}',
                                   'QUOTED': 'x # y', 'MULTI': 'one\ntwo'}
    for text, line in (('A=1\n\n\nBAD LINE\n', 4), ('A=1\nNOVALUE\n', 2), ('1X=2\n', 1)):
        path.write_text(text)
        with pytest.raises(ValueError, match=f'{path}:{line}: not NAME=value'):
            read_env_file(path)
    job = from_mapping({'jobs': {'J': {'factory': 'a:B', 'env_files': ['secrets.env']}}}, path=tmp_path / 'x',
                       root=tmp_path).job('J')
    with pytest.raises(ConfigError) as info:
        env_file_values(job, tmp_path)
    assert info.value.render().splitlines() == [
        f"ERROR: key 'jobs.J.env_files': env file {path}:1: not NAME=value",
        'TIP: write one NAME=value per line (# starts a comment)']


def test_the_reference_has_a_table_per_section_from_the_fields():
    text = reference.markdown()
    headings = [line for line in text.splitlines() if line.startswith('## ')]
    assert headings == ['## [package]', '## [docker]', '## [run]', '## [remote]', '## [swarm]', '## [registry]',
                        '## [jobs.NAME]']
    assert '| key | type | default | command line | what it does |' in text
    assert ('| `memory_gb` | number | `0.0` | `memory=`, `run.memory_gb=` | memory limit in GB, 0 = none; at least '
            '0 (no limit) |') in text
    assert '| `cpu` | number | `run.cpu` | `jobs.NAME.cpu=` | CPU limit in cores, 0 = none (default: run.cpu) |' in text
    assert '`"" or "registry" or "ssh"`'.replace(' or ', '` or `') in text  # choices
    assert 'TG_PIPELINE_BASE_IMAGE' in text and 'on_interrupt' in text.split('## [jobs.NAME]')[1]
