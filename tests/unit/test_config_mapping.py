"""from_mapping: one way to a frozen Config for pipeline.toml, the command line and the Python API (no Docker)."""
import dataclasses
import json
import sys
import textwrap

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tg_pipeline import config
from tg_pipeline.errors import ConfigError
from tg_pipeline.package import dockerfile
from tg_pipeline.config.requirements import check_requirements, image_requirements, requirement_name

PIPELINE = '''\
[package]
version = "1.2.0"
dependencies = ["numpy>=1.24"]

[run]
env = ["PLAIN", "API_TOKEN"]
cpu = 1
memory_gb = 0.5

[jobs.Train]
factory = "jobs.train:Train"
args = [10]
kwargs = { lr = 0.1, name = "base" }
cpu = 2

[swarm]
labels = { team = "ml" }
'''


def write(tmp_path, text=PIPELINE, folder='project'):
    path = tmp_path / folder / 'pipeline.toml'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path, text=PIPELINE, **kw):
    kw.setdefault('environ', {})
    return config.load(write(tmp_path, text), **kw)


def api_mapping(tmp_path):
    """What the Python API passes: absolute folders, its own image, no factory, None for 'not given'."""
    return {
        'package': {'version': '0.3.0', 'source_roots': [str(tmp_path / 'src')], 'build_dir': str(tmp_path / 'b')},
        'docker': {'base_image': None, 'image_prefix': ''},
        'remote': {'host': 'gpu-box', 'user': None, 'port': 2222, 'accept_unknown_host_keys': True},
        'registry': {'address': 'registry.example:5000'},
        'swarm': {'max_concurrent': 2, 'labels': {'team': 'api'}},
        'jobs': {'Scaled': {'package': 'Scaled', 'version': '0.3.0', 'dependencies': ['tabulate==0.9.0'],
                            'env': ['HOME'], 'cpu': 0.5, 'memory_gb': 1, 'image': 'scaled:0.3.0'}},
    }


def test_from_mapping_builds_what_the_python_api_gives(tmp_path):
    c = config.from_mapping(api_mapping(tmp_path), path=tmp_path / '<python api>', root=tmp_path, environ={})
    job = c.job('Scaled')
    assert (job.factory, job.image, job.module) == ('', 'scaled:0.3.0', 'scaled__0_3_0')
    assert (job.run.cpu, job.run.memory_gb, job.args, dict(job.kwargs)) == (0.5, 1.0, (), {})
    assert job.dependencies == ('tabulate==0.9.0',) and job.run.env == ('HOME',)
    assert c.build_dir == tmp_path / 'b' and c.source_roots == [tmp_path / 'src']
    assert (c.remote.host, c.remote.user, c.remote.port, c.remote.accept_unknown_host_keys) == \
           ('gpu-box', '', 2222, True)
    assert c.run.max_concurrent == 2 and dict(c.swarm.labels) == {'team': 'api'}  # [swarm]'s moved to [run]
    assert job.run.max_concurrent == 2
    assert c.base_image == config.default_base_image()
    assert c.origins['remote.port'] == 'Python API' and c.origins['remote.user'] == 'default'
    assert c.origins['jobs.Scaled.cpu'] == 'Python API'
    env = config.from_mapping(api_mapping(tmp_path), path=tmp_path / 'x', environ={config.BASE_IMAGE_ENV: 'b:1'})
    assert env.base_image == 'b:1'  # the environment wins over the API's value, as over the file's


def test_a_file_job_needs_a_factory_an_api_job_does_not(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, '[jobs.Train]\ncpu = 1\n')
    assert info.value.line == 1 and info.value.key == 'jobs.Train.factory'
    assert 'needs factory = "module.path:ClassOrFunction"' in info.value.message


@pytest.mark.parametrize('data, key, words', [
    ({'run': {'on_interrupt': 'pause'}}, 'run.on_interrupt', 'run.on_interrupt must be "stop" or "detach"'),
    ({'remote': {'transfer': 'ftp'}}, 'remote.transfer', 'remote.transfer must be "registry" or "ssh"'),
    ({'swarm': {'manager': 'cloud'}}, 'swarm.manager', 'swarm.manager must be "local" or "remote"'),
])
def test_a_literal_refuses_other_values_and_lists_the_choices(tmp_path, data, key, words):
    with pytest.raises(ConfigError) as info:
        config.from_mapping(data, path=tmp_path / 'x')
    error = info.value
    assert error.key == key and words in error.message
    assert error.message.startswith('Python API, ')  # where the value came from
    choices = words.split(' must be ')[1]
    assert f'TIP: choose {choices}' in error.render()


@pytest.mark.parametrize('data, words', [
    ({'run': {'cpu': True}}, "run.cpu must be a number, not True"),  # a boolean is no number
    ({'remote': {'port': 22.5}}, 'remote.port must be an integer, not 22.5'),
    ({'run': {'env': ['A', 1]}}, 'run.env must be a list of strings'),
    ({'swarm': {'labels': {'team': 1}}}, 'swarm.labels must be a table of strings'),
    ({'remote': {'accept_unknown_host_keys': 'yes'}}, 'must be a boolean (true/false)'),
    ({'swarm': {'schedule_timeout': -1}}, 'swarm.schedule_timeout must be 0 or positive, not -1.0'),
    ({'jobs': {'bad.name': {'factory': 'a:B'}}}, "job name 'bad.name' must be letters, digits, _ or -"),
    ({'jobs': {'J': {'factory': 'a/b.py'}}}, 'jobs.J.factory = \'a/b.py\' is not "module.path:Name"'),
    ({'jobs': {'J': {'factory': 'a:B', 'sweep': {'lr': []}}}}, 'jobs.J.sweep.lr must be a non-empty array'),
    ({'jobs': {'J': {'factory': 'a:B', 'memory_gb': 0.001}}}, 'jobs.J.memory_gb = 0.001 is below the 6 MiB'),
    ({'docker': {'base': 'x'}}, "unknown key 'base' in [docker]"),
    ({'dockr': {}}, 'unknown section [dockr]'),
])
def test_types_and_bounds_come_from_the_fields(tmp_path, data, words):
    with pytest.raises(ConfigError) as info:
        config.from_mapping(data, path=tmp_path / 'x')
    assert words in info.value.message


def test_numbers_are_floats_and_an_int_is_a_number(tmp_path):
    c = load(tmp_path)
    assert c.run.cpu == 1.0 and isinstance(c.run.cpu, float)
    assert isinstance(c.remote.port, int) and c.swarm.schedule_timeout == 30


def test_everything_is_frozen(tmp_path):
    c = load(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.run = config.RunSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.run.cpu = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.job('Train').run.cpu = 3
    with pytest.raises(TypeError):
        c.job('Train').kwargs['lr'] = 1
    with pytest.raises(TypeError):
        c.swarm.labels['team'] = 'x'
    with pytest.raises(TypeError):
        c.jobs['Other'] = c.job('Train')
    with pytest.raises(TypeError):
        c.origins['run.cpu'] = 'me'
    assert isinstance(c.run.env, tuple) and isinstance(config.RunSettings(env=['A']).env, tuple)


def test_a_bad_command_line_value_names_the_command_line_not_the_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, overrides={'memory': 'lots'})
    error = info.value
    assert error.file == 'command line' and error.line is None and error.key == 'memory'
    assert "memory must be a number, not 'lots'" in error.message and 'command line' in error.message
    assert 'pipeline.toml' not in error.render()
    with pytest.raises(ConfigError) as info:  # a bound broken on the command line: the command line again
        load(tmp_path, overrides={'jobs.Train.memory_gb': '-1'})
    assert info.value.file == 'command line' and 'pipeline.toml' not in info.value.render()
    assert 'jobs.Train.memory_gb must be 0 (no limit) or positive' in info.value.message


def test_origins_name_default_file_line_environment_and_command_line(tmp_path):
    c = load(tmp_path, environ={config.BASE_IMAGE_ENV: 'base:1'}, overrides={'memory': '2', 'job': 'Train'})
    path = str(c.path)
    assert c.origins['run.on_interrupt'] == 'default'
    assert c.origins['run.cpu'] == f'{path}:7'
    assert c.origins['docker.base_image'] == f'environment {config.BASE_IMAGE_ENV}'
    assert c.origins['run.memory_gb'] == 'command line'
    assert c.origins['jobs.Train.cpu'] == f'{path}:14'  # the job's own table
    assert c.origins['jobs.Train.memory_gb'] == 'command line'  # [run] from the command line beats it
    assert c.origins['jobs.Train.version'] == f'{path}:2'  # inherited from [package]
    assert c.origins['jobs.Train.sweep'] == 'default'
    assert c.origins['jobs.Train.env'] == f'{path}:6'


def test_job_settings_from_the_command_line(tmp_path):
    c = load(tmp_path, overrides={'jobs.Train.kwargs.lr': '0.01', 'jobs.Train.kwargs.note': 'fast run',
                                  'jobs.Train.args': '[1, 2]', 'jobs.Train.env': 'EXTRA,MORE', 'cpu': '4'})
    job = c.job('Train')
    assert dict(job.kwargs) == {'lr': 0.01, 'name': 'base', 'note': 'fast run'}
    assert job.args == (1, 2)
    assert job.run.env == ('EXTRA', 'MORE')  # a list given on the command line replaces pipeline.toml's
    assert job.run.cpu == 4  # the command line's [run] wins over the job's table ...
    own = load(tmp_path, overrides={'cpu': '4', 'jobs.Train.cpu': '3'})
    assert own.job('Train').run.cpu == 3  # ... and loses to the job's own on the command line
    assert c.origins['jobs.Train.kwargs.lr'] == 'command line'
    assert c.origins['jobs.Train.kwargs'] == f'{c.path}:13 + command line'
    assert job.fingerprint()['kwargs'] == {'lr': 0.01, 'name': 'base', 'note': 'fast run'}
    with pytest.raises(ConfigError, match="unknown job 'Tain'"):
        load(tmp_path, overrides={'jobs.Tain.cpu': '1'})
    with pytest.raises(ConfigError, match='unknown command-line setting jobs.Train.factoy=x'):
        load(tmp_path, overrides={'jobs.Train.factoy': 'x'})


def test_section_settings_from_the_command_line(tmp_path):
    c = load(tmp_path, overrides={'package.source_roots': 'jobs,lib',
                                  'swarm.labels.owner': 'me', 'version': '2.0', 'transfer': 'ssh',
                                  'all_projects': '1', 'keep': '3', 'files': 'a', 'verbose': '1'})
    assert c.package.source_roots == ('jobs', 'lib')
    assert dict(c.swarm.labels) == {'team': 'ml', 'owner': 'me'}
    assert c.package.version == '2.0' and c.job('Train').version == '2.0'  # TOML 2.0 kept as typed
    assert c.remote.transfer == 'ssh'


def test_project_id_is_stable_per_folder_and_name(tmp_path):
    me = 'ann@box'
    one, two = tmp_path / 'One Project', tmp_path / 'two'
    first = config.project_id('', one, me)
    assert first == config.project_id('', one, me)
    assert first.startswith('one-project-') and len(first.rsplit('-', 1)[1]) == 8
    assert first != config.project_id('', two, me)
    assert first != config.project_id('', one, 'bob@box')
    assert config.project_id('Vision', one, me) == config.project_id('Vision', two, me)  # named: any folder
    long = config.project_id('A' * 60 + '!!/Ünïcode', one, me)
    slug = long.rsplit('-', 1)[0]
    assert len(slug) <= 40 and all(ch in 'abcdefghijklmnopqrstuvwxyz0123456789_.-' for ch in slug)
    c = load(tmp_path)
    assert c.project == config.project_id('', c.root, config.owner()) and c.owner == config.owner()
    assert c.project.startswith('project-')


def test_a_declared_cloudpickle_is_the_only_cloudpickle_pin():
    assert image_requirements(['cloudpickle~=3.0', 'numpy'], '3.1.1') == ['cloudpickle~=3.0', 'numpy']
    assert image_requirements(['CloudPickle>=2; python_version>"3"'], '3.1.1') == ['CloudPickle>=2; python_version>"3"']
    assert image_requirements(['numpy'], '3.1.1') == ['cloudpickle==3.1.1', 'numpy']
    assert dockerfile.requirements(['cloudpickle~=3.0']) == ['cloudpickle~=3.0']
    assert requirement_name('Tabulate_Extra[wide]==0.9') == 'tabulate-extra'


def test_an_invalid_requirement_names_its_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, PIPELINE.replace('"numpy>=1.24"', '"numpy>=1.24", "numpy >>= 2"'))
    error = info.value
    assert error.key == 'package.dependencies' and error.line == 3 and error.file.endswith('pipeline.toml')
    assert "'numpy >>= 2' in package.dependencies is not a valid requirement" in error.message
    with pytest.raises(ConfigError) as info:
        config.from_mapping({'jobs': {'J': {'factory': 'a:B', 'dependencies': ['ok', 'not ok']}}}, path=tmp_path)
    assert info.value.key == 'jobs.J.dependencies' and 'Python API' in info.value.render()
    with pytest.raises(ConfigError, match='package.dependencies'):
        check_requirements(['fine', '-e .'], key='package.dependencies')


def test_describe_prints_toml_with_origins_and_masked_secrets(tmp_path):
    c = load(tmp_path, overrides={'memory': '2'})
    text = config.describe(c, environ={'PLAIN': 'it\'s "here"', 'API_TOKEN': 'hunter2'})
    assert 'cpu = 1.0  # pipeline.toml:7' in text and 'memory_gb = 2.0  # command line' in text
    assert "env.API_TOKEN = '***'" in text and 'hunter2' not in text
    assert 'env.PLAIN = "it\'s \\"here\\""' in text
    assert 'labels = { team = "ml" }  # pipeline.toml:17' in text
    parsed = tomllib.loads(text)
    assert parsed['jobs']['Train']['kwargs'] == {'lr': 0.1, 'name': 'base'}
    again = config.from_mapping(parsed, path=c.path, environ={})  # what it prints is a configuration again
    assert again.job('Train') == dataclasses.replace(c.job('Train'), line=None, factory_line=None)


def test_fingerprint_is_json_and_variants_as_before(tmp_path):
    text = PIPELINE + '[jobs.Train.sweep]\nlr = [0.1, 0.2]\nwidth = [8]\n'
    job = load(tmp_path, text).job('Train')
    assert json.loads(json.dumps(job.fingerprint())) == job.fingerprint()
    assert job.fingerprint()['sweep'] == {'lr': [0.1, 0.2], 'width': [8]}
    assert job.variants() == [('lr=0.1,width=8', {'lr': 0.1, 'name': 'base', 'width': 8}),
                              ('lr=0.2,width=8', {'lr': 0.2, 'name': 'base', 'width': 8})]


def test_a_config_made_by_hand_is_frozen_too(tmp_path):
    c = config.Config(path=tmp_path / 'x', root=tmp_path, jobs={'J': config.JobConfig(
        name='J', factory='', args=[], kwargs={}, package='j', version='1', module='j__1', dependencies=[],
        run=config.RunSettings(env=[], cpu=0, memory_gb=0))})
    with pytest.raises(TypeError):
        c.jobs['K'] = c.jobs['J']
    assert c.job('J').args == () and c.job('J').run.env == () and c.run.on_interrupt == 'stop'


def test_a_table_set_only_on_the_command_line_comes_from_there(tmp_path):
    c = load(tmp_path, PIPELINE.replace('kwargs = { lr = 0.1, name = "base" }\n', ''),
             overrides={'jobs.Train.kwargs.lr': '0.5', 'swarm.labels.owner': 'me'})
    assert dict(c.job('Train').kwargs) == {'lr': 0.5}
    assert c.origins['jobs.Train.kwargs'] == 'command line'
    assert c.origins['swarm.labels'] == f'{c.path}:16 + command line'


# --- lists from the command line, the same mount or port twice (issue 22) ---------------------------------------
LISTS = '''[run]
mounts = ["/srv/shared:/shared"]
ports = ["6006"]

[jobs.Train]
factory = "jobs.train:Train"
mounts = ["/srv/data:/data"]
ports = ["8888:8888"]
'''


def lists(tmp_path, text=LISTS, **overrides):
    (tmp_path / 'pipeline.toml').write_text(text)
    return config.load(tmp_path / 'pipeline.toml', overrides=overrides, environ={})


def test_a_list_given_on_the_command_line_replaces_the_jobs_list(tmp_path):
    assert lists(tmp_path).job('Train').run.mounts == ('/srv/shared:/shared', '/srv/data:/data')  # joined
    c = lists(tmp_path, mounts='/data:/data:ro')
    assert c.job('Train').run.mounts == ('/data:/data:ro',)  # not one more: Duplicate mount point
    assert c.origins['jobs.Train.mounts'] == 'command line'
    assert c.job('Train').run.ports == ('6006', '8888:8888')  # a list not given stays joined
    assert lists(tmp_path, **{'jobs.Train.ports': '7000'}).job('Train').run.ports == ('7000',)


def test_the_same_mount_twice_is_one_error_naming_both_origins(tmp_path):
    path = tmp_path / 'pipeline.toml'
    text = LISTS.replace('mounts = ["/srv/data:/data"]', 'mounts = ["/srv/data:/shared:rw"]')
    with pytest.raises(ConfigError) as found:
        lists(tmp_path, text)
    assert found.value.render() == (
        f"ERROR: {path}:7, key 'jobs.Train.mounts': jobs.Train.mounts: container path /shared is given twice, as "
        f"'/srv/shared:/shared' and as '/srv/data:/shared:rw' (from {path}:2 and from {path}:7)\n"
        "TIP: keep one of them: a list given on the command line replaces the one of pipeline.toml "
        "(e.g. mounts=/srv/data:/shared:rw)")
    with pytest.raises(ConfigError, match=r"host port 127\.0\.0\.1:7000 is given twice, as '7000' and as "
                                          r"'7000:80' \(both on the command line\)"):
        lists(tmp_path, ports='7000,7000:80')


def test_the_same_mount_written_twice_is_kept_once(tmp_path):
    text = LISTS.replace('mounts = ["/srv/data:/data"]', 'mounts = ["/srv/shared:/shared:ro", "/srv/data:/data"]')
    assert lists(tmp_path, text).job('Train').run.mounts == ('/srv/shared:/shared', '/srv/data:/data')


def test_a_requirement_matched_as_plain_is_one_packaging_accepts():
    """check_requirements leaves packaging out for plain requirements: every text PLAIN matches must be one
    packaging parses (texts made from valid and invalid pieces, both kinds many times)."""
    import random
    from packaging.requirements import Requirement
    from tg_pipeline.config.requirements import PLAIN
    pieces = {'name': ['numpy', 'scikit-learn', 'A.b_c-d', 'x', '-bad', 'bad-', 'tor ch', 'zope.interface', '_u'],
              'extras': ['', '[cuda]', '[a,b]', '[a,]', '[]', '[-x]', '[ x ]'],
              'op': ['==', '>=', '<=', '!=', '<', '>', '~=', '===', '=', '=>', ''],
              'version': ['1', '1.0', '2.1.3', '1.*', '1.0a1', '01.2', '.1', '1.', 'x', '']}
    chance = random.Random(508)
    matched = 0
    for _ in range(4000):
        clauses = [chance.choice(pieces['op']) + chance.choice(pieces['version'])
                   for _ in range(chance.choice([0, 1, 1, 2]))]
        text = chance.choice(pieces['name']) + chance.choice(pieces['extras']) + ','.join(clauses)
        if PLAIN.fullmatch(text):
            matched += 1
            assert Requirement(text).name, text  # raises InvalidRequirement where packaging refuses it
    assert matched > 100 and 4000 - matched > 100  # both kinds were tried many times
