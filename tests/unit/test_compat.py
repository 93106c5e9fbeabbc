"""The private names of our dependencies that tg_pipeline.compat relies on exist in the installed versions,
and those versions are inside the ranges pyproject.toml pins."""
import re
import tomllib
from pathlib import Path

from tg_pipeline import compat

PYPROJECT = Path(__file__).resolve().parents[2] / 'pyproject.toml'


def test_installed_dependencies_have_the_private_names_we_use():
    assert compat.problems() == []


def test_pyproject_pins_the_ranges_compat_was_checked_on():
    deps = tomllib.loads(PYPROJECT.read_text())['project']['dependencies']
    pins = {re.split(r'[<>=!~ ]', d, 1)[0]: d for d in deps}
    def text(version):
        return str(version[0]) if version[1:] == (0,) and version[0] else '.'.join(map(str, version))
    for name, (low, high) in (('docker', compat.DOCKER_RANGE), ('doit', compat.DOIT_RANGE),
                              ('paramiko', compat.PARAMIKO_RANGE)):
        assert f'>={text(low)}' in pins[name] and f'<{text(high)}' in pins[name], pins[name]


def test_a_version_outside_the_range_is_reported(monkeypatch):
    import docker
    monkeypatch.setattr(docker, '__version__', '8.0.1')
    assert any('docker 8.0.1 is outside' in p for p in compat.problems())
