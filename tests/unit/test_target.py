"""The test target (tests/target.py): the one place that names the test remote. The fixture projects hold
placeholders that a copy fills, every variable is documented, and no other test, bench or package file names the
target's defaults."""
import shutil
import subprocess

import pytest

from tg_pipeline import config

from conftest import PROJECTS, REPO, copy_project
from target import PLACEHOLDERS, TARGET, VARIABLES, Target, fill, host_of

FILLED = [p.parent.name for p in sorted(PROJECTS.glob('*/pipeline.toml'))
          if any(line in p.read_text() for line, _, _ in PLACEHOLDERS)]


def test_the_target_comes_from_the_environment_with_the_set_up_scripts_defaults():
    mine = Target.from_env({'TG_TEST_REMOTE': 'me@gpu-box', 'TG_TEST_REGISTRY': 'registry.example:5000',
                            'TG_TEST_REMOTE_NETNS': ''})
    assert (mine.remote, mine.registry, mine.netns) == ('me@gpu-box', 'registry.example:5000', '')
    assert mine.alias == 'gpu-box'
    assert mine.link == VARIABLES['link'][1]  # not given: the default
    assert Target.from_env({}) == Target(**{field: default for field, (_, default, _) in VARIABLES.items()})


@pytest.mark.parametrize('destination, host', [('gpu-box', 'gpu-box'), ('me@gpu-box', 'gpu-box'),
                                               ('ssh://me@gpu-box:2222', 'gpu-box'), ('ssh://[::1]:22', '::1')])
def test_the_alias_is_the_destinations_host(destination, host):
    assert host_of(destination) == host


def test_a_copy_names_the_targets_remote_and_registry(tmp_path):
    assert FILLED == ['absolute_imports', 'basic', 'edit_loop', 'ml']
    mine = Target.from_env({'TG_TEST_REMOTE': 'ssh://me@gpu-box:2222', 'TG_TEST_REGISTRY': 'registry.example:5000'})
    for name in FILLED:
        copied = tmp_path / name
        shutil.copytree(PROJECTS / name, copied)
        fill(copied / 'pipeline.toml', mine)
        loaded = config.load(copied / 'pipeline.toml', environ={})
        assert (loaded.remote.host, loaded.registry.address) == ('ssh://me@gpu-box:2222', 'registry.example:5000')
    project = copy_project('basic', tmp_path / 'default')
    assert f'host = "{TARGET.remote}"' in project.read('pipeline.toml')
    assert f'address = "{TARGET.registry}"' in project.read('pipeline.toml')


@pytest.mark.parametrize('name', FILLED)
def test_a_fixture_project_read_where_it_is_names_no_remote(name):
    loaded = config.load(PROJECTS / name / 'pipeline.toml', environ={})
    assert (loaded.remote.host, loaded.registry.address) == ('', '')


def test_contributing_documents_every_variable():
    text = (REPO / 'CONTRIBUTING.md').read_text()
    section = text[text.index('### The test target'):]
    assert [name for name, _, _ in VARIABLES.values() if f'| `{name}` |' not in section] == []


def test_no_other_file_names_the_test_target():
    """The set-up scripts' names of the test remote (the defaults here) appear in no test, bench or package file
    (tracked, or new and not ignored) but tests/target.py."""
    names = [VARIABLES[field][1] for field in ('remote', 'registry', 'remote_docker', 'nodocker_user', 'netns',
                                               'link', 'swarm_head', 'swarm_head_docker', 'swarm_worker_docker')]
    listed = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', 'tests', 'bench',
                             'tg_pipeline'], cwd=REPO, capture_output=True, text=True, check=True).stdout.split('\n')
    found = []
    for relative in filter(None, listed):
        path = REPO / relative
        if relative == 'tests/target.py' or not path.is_file():
            continue
        text = path.read_text(errors='replace')
        found += [f'{relative}: {name}' for name in names if name in text]
    assert len([r for r in listed if r.startswith('tests/integration/')]) > 20  # the listing found the files
    assert found == []
