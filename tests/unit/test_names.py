"""Names and versions that reach Docker references, pip metadata and file names are refused by from_mapping
(pipeline.toml, the command line, the Python API) with a TIP whose value is valid (no Docker)."""
import re
import textwrap

import pytest

from tg_pipeline import Containering, Packaging, SSHDockerConfig, SSHDockerOptions, config
from tg_pipeline.api import pipeline_config
from tg_pipeline.config.names import reference_problem, version_problem
from tg_pipeline.errors import ConfigError, InvalidName
from tg_pipeline.paths import JobPaths

PIPELINE = '''\
[package]
version = "1.0.0"

[docker]
image_prefix = "team-"

[jobs.Train]
factory = "jobs.train:Train"
'''
BAD_VERSIONS = ['../../../x', '1.0.0-beta+x', '1:2', '', 'ü1', '1.0 ']


def load(tmp_path, text=PIPELINE, **kw):
    path = tmp_path / 'pipeline.toml'
    path.write_text(textwrap.dedent(text))
    return config.load(path, environ={}, **kw)


def tip_value(error: ConfigError, pattern: str) -> str:
    found = re.search(pattern, error.render().split('\nTIP: ', 1)[1])
    assert found, error.render()
    return found.group(1)


@pytest.mark.parametrize('version', BAD_VERSIONS)
def test_a_bad_version_in_the_file_names_key_and_line_and_the_tip_is_valid(tmp_path, version):
    with pytest.raises(InvalidName) as info:
        load(tmp_path, PIPELINE.replace('"1.0.0"', f'"{version}"'))
    error = info.value
    assert (error.key, error.line, error.file) == ('package.version', 2, str(tmp_path / 'pipeline.toml'))
    assert f"package.version = {version!r} is not a valid version" in error.message
    proposal = tip_value(error, r'^e\.g\. version = "([^"]*)" in \[package\]$')
    assert version_problem(proposal) is None
    fixed = load(tmp_path, PIPELINE.replace('"1.0.0"', f'"{proposal}"'))  # the TIP, pasted
    assert fixed.job('Train').version == proposal


@pytest.mark.parametrize('version', BAD_VERSIONS)
def test_a_bad_version_on_the_command_line_names_the_command_line(tmp_path, version):
    with pytest.raises(InvalidName) as info:
        load(tmp_path, overrides={'version': version})
    error = info.value
    assert error.file == 'command line' and error.line is None and 'pipeline.toml' not in error.render()
    assert '(given on the command line)' in error.message
    proposal = tip_value(error, r'^e\.g\. package\.version=(\S+) on the command line$')
    assert load(tmp_path, overrides={'version': proposal}).job('Train').version == proposal


def test_a_job_version_is_checked_where_it_is_set(tmp_path):
    text = PIPELINE + 'version = "2:0"\n'
    with pytest.raises(InvalidName) as info:
        load(tmp_path, text)
    assert (info.value.key, info.value.line) == ('jobs.Train.version', 9)
    assert 'TIP: e.g. version = "2.0" in [jobs.Train]' in info.value.render()
    with pytest.raises(InvalidName, match="jobs.Train.version = '' is not a valid version"):
        load(tmp_path, PIPELINE + 'version = ""\n')  # empty is a value, not "inherit"


@pytest.mark.parametrize('prefix, proposal', [('Team/', 'team/'), ('team-/', 'team/'), ('a//', 'a/'),
                                              ('Über_', 'uber_'), ('/x', 'x')])
def test_a_bad_image_prefix_names_its_line_and_proposes_a_valid_one(tmp_path, prefix, proposal):
    with pytest.raises(InvalidName) as info:
        load(tmp_path, PIPELINE.replace('"team-"', f'"{prefix}"'))
    assert (info.value.key, info.value.line) == ('docker.image_prefix', 5)
    assert f'TIP: e.g. image_prefix = "{proposal}" in [docker]' in info.value.render()
    fixed = load(tmp_path, PIPELINE.replace('"team-"', f'"{proposal}"'))
    assert reference_problem(f'{fixed.docker.image_prefix}{fixed.job("Train").package}:1.0.0') is None


@pytest.mark.parametrize('prefix', ['team/', 'team-', 'registry.example.com:5000/ml/', 'localhost/x.', ''])
def test_valid_image_prefixes_pass(tmp_path, prefix):
    assert load(tmp_path, PIPELINE.replace('"team-"', f'"{prefix}"')).docker.image_prefix == prefix


def test_a_unicode_job_name_is_refused_with_an_ascii_one(tmp_path):
    with pytest.raises(InvalidName) as info:
        load(tmp_path, PIPELINE.replace('[jobs.Train]', '[jobs."Träin"]'))
    assert info.value.key == 'jobs.Träin' and info.value.line == 7
    assert 'TIP: rename [jobs.Träin] to [jobs.Train]' in info.value.render()


def test_a_job_name_that_is_no_image_name_asks_for_a_package(tmp_path):
    with pytest.raises(InvalidName) as info:
        load(tmp_path, PIPELINE.replace('[jobs.Train]', '[jobs._Train]'))
    assert "job name '_Train' gives the image name '_train', which Docker refuses" in info.value.message
    assert info.value.line == 7
    assert 'TIP: set package = "train" in [jobs._Train], or rename the job' in info.value.render()
    fixed = load(tmp_path, PIPELINE.replace('[jobs.Train]', '[jobs._Train]') + 'package = "train"\n')
    assert fixed.job('_Train').package == 'train'


@pytest.mark.parametrize('package', ['a/b', 'x..y', '', 'tr ain', '-x'])
def test_a_bad_package_names_its_key(tmp_path, package):
    with pytest.raises(InvalidName) as info:
        load(tmp_path, PIPELINE + f'package = "{package}"\n')
    assert (info.value.key, info.value.line) == ('jobs.Train.package', 9)
    assert 'TIP: e.g. package = "' in info.value.render()


def test_an_own_image_reference_is_checked(tmp_path):
    with pytest.raises(InvalidName, match=r"jobs.Train.image = 'Team/x:1\+2' is not a valid image name:tag") as info:
        load(tmp_path, PIPELINE + 'image = "Team/x:1+2"\n')
    assert info.value.line == 9 and 'TIP: e.g. image = "team/x:1" in [jobs.Train]' in info.value.render()
    assert load(tmp_path, PIPELINE + 'image = "team/x:1"\n').job('Train').image == 'team/x:1'
    assert load(tmp_path, PIPELINE + 'image = "host:5000/team/x:1.0"\n').job('Train').image == 'host:5000/team/x:1.0'


def api_config(tmp_path, name='train', version='1.0.0', image=None):
    packaging = Packaging(name, version, dict(job=len))
    packaging.build_dir = str(tmp_path / 'build')
    containering = Containering.from_packaging(packaging)
    if image:
        containering.image_name, containering.image_tag = image
    return SSHDockerConfig(packaging, containering, SSHDockerOptions())


@pytest.mark.parametrize('name, version, image, words, tip', [
    ('train', '1:2', None, "Packaging.version '1:2' is not valid", "e.g. Packaging('train', '1.2', payload)"),
    ('train', '', None, "Packaging.version '' is not valid", "e.g. Packaging('train', '0.1.0', payload)"),
    ('Tr ain', '1.0', None, "Packaging.name 'Tr ain' is not valid", "e.g. Packaging('tr-ain', '1.0', payload)"),
    ('_train', '1.0', None, "Packaging.name '_train' is not valid", "e.g. Packaging('train', '1.0', payload)"),
    ('train', '1.0', ('Team/x', '1.0'), "Containering image (image_name:image_tag) 'Team/x:1.0' is not valid",
     "e.g. Containering('team-x', '1.0')"),
    ('train', '1.0', ('x', ''), "Containering image (image_name:image_tag) 'x:' is not valid",
     "e.g. Containering('x', '0.1.0')"),
])
def test_the_python_api_names_its_own_settings(tmp_path, name, version, image, words, tip):
    with pytest.raises(InvalidName) as info:
        pipeline_config(api_config(tmp_path, name, version, image), [])
    assert info.value.render().startswith(f'ERROR: Python API: {words}: ')
    assert info.value.hint == tip
    assert not (tmp_path / 'build').exists()


def test_a_prefix_and_package_too_long_together_say_what_to_shorten(tmp_path):
    with pytest.raises(InvalidName) as info:
        load(tmp_path, PIPELINE.replace('"team-"', f'"{"t" * 200}-"') + f'package = "{"p" * 60}"\n')
    assert 'longer than the 255 characters Docker allows' in info.value.message
    assert info.value.hint == 'shorten image_prefix in [docker] or package in [jobs.Train]'


def test_job_paths_refuse_to_leave_the_build_folder(tmp_path):
    for job, module, version in [('..', 'm', '1'), ('a/b', 'm', '1'), ('J', 'm', '../../../x'), ('J', 'm/..', '1')]:
        with pytest.raises(ConfigError, match='would write outside the build folder'):
            JobPaths(tmp_path / 'build', job, module, version)
    paths = JobPaths(tmp_path / 'build', 'J', 'j__1_0', '1.0')
    assert paths.sdist == tmp_path / 'build' / 'J' / 'context' / 'j__1_0-1.0.tar.gz'
