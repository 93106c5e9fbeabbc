"""The private names of our dependencies that tg_pipeline.compat relies on exist in the installed versions,
and those versions are inside the ranges pyproject.toml pins."""
import re
import tomllib
from pathlib import Path

import pytest

from tg_pipeline import compat
from tg_pipeline.compat.doit import doit_command_line, doit_exit_code

PYPROJECT = Path(__file__).resolve().parents[2] / 'pyproject.toml'


def test_installed_dependencies_have_the_private_names_we_use():
    assert compat.problems() == []


def test_pyproject_pins_the_ranges_compat_was_checked_on():
    deps = tomllib.loads(PYPROJECT.read_text())['project']['dependencies']
    pins = {re.split(r'[<>=!~ ]', d, 1)[0]: d for d in deps}
    def text(version):
        return str(version[0]) if version[1:] == (0,) and version[0] else '.'.join(map(str, version))
    for name, (low, high) in (('docker', compat.DOCKER_RANGE), ('doit', compat.DOIT_RANGE),
                              ('paramiko', compat.PARAMIKO_RANGE), ('python-dotenv', compat.DOTENV_RANGE)):
        assert f'>={text(low)}' in pins[name] and f'<{text(high)}' in pins[name], pins[name]


def test_a_version_outside_the_range_is_reported(monkeypatch):
    import docker
    monkeypatch.setattr(docker, '__version__', '8.0.1')
    assert any('docker 8.0.1 is outside' in p for p in compat.problems())


def _exit_script(tmp_path, body: str) -> list[str]:
    marker = tmp_path / 'handler-ran'
    return [__import__('sys').executable, '-c',
            'import atexit, threading, time\nfrom tg_pipeline.compat import doit as compat\n'
            f'atexit.register(lambda: open({str(marker)!r}, "w").write("yes"))\n' + body]


def test_exit_now_runs_the_exit_handlers_then_ends_with_the_code(tmp_path):
    import subprocess
    result = subprocess.run(_exit_script(tmp_path, 'print("said", flush=False)\ncompat.exit_now(3)\nprint("after")'),
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (3, 'said\n')  # buffered output flushed, nothing after it
    assert (tmp_path / 'handler-ran').read_text() == 'yes'


def test_exit_now_does_nothing_while_a_thread_the_exit_waits_for_runs_or_when_debugging(tmp_path):
    import os
    import subprocess
    waiting = 'done = threading.Event()\nthreading.Thread(target=done.wait).start()\ncompat.exit_now(3)\n' \
              'print("returned")\ndone.set()'
    result = subprocess.run(_exit_script(tmp_path, waiting), capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, 'returned\n')
    debug = subprocess.run(_exit_script(tmp_path, 'compat.exit_now(3)\nprint("returned")'), capture_output=True,
                           text=True, env={**os.environ, 'TG_PIPELINE_DEBUG': '1'})
    assert (debug.returncode, debug.stdout) == (0, 'returned\n')


def test_doit_exit_code_is_the_runners():
    from doit.exceptions import TaskError, TaskFailed
    assert doit_exit_code([], []) == 0
    assert doit_exit_code([TaskFailed('x', report=False)], []) == 1
    assert doit_exit_code([TaskFailed('x'), TaskError('y')], []) == 2
    assert doit_exit_code([], ['a dependency cycle']) == 2


@pytest.mark.parametrize('orig_argv, expected', [
    (['/venv/bin/python', '/venv/bin/doit', 'run_local'], True), (['python', '-m', 'doit', 'list'], True),
    (['python', '-X', 'importtime', '-u', '-m', 'doit'], True),
    (['python', '-m', 'cProfile', '-o', 'p.out', '-m', 'doit'], False),
    (['python', '/venv/bin/coverage', 'run', '-m', 'doit'], False), (['python', '-m', 'pytest'], False),
])
def test_only_the_doit_command_itself_ends_early(monkeypatch, orig_argv, expected):
    """pytest, the Python API, a profiler or coverage go on after doit returns: they must not be cut short."""
    import sys
    monkeypatch.setattr(sys, 'orig_argv', orig_argv, raising=False)
    assert doit_command_line() is expected


@pytest.mark.parametrize('served, pinned, refused, spoken', [(('1.12', '1.41'), '1.45', 'too new', '1.41'),
                                                             (('1.44', '1.52'), '1.41', 'too old', '1.52')],
                         ids=['docker-20.10', 'docker-29'])
def test_a_remote_client_speaks_the_api_version_its_engine_serves(served, pinned, refused, spoken):
    """The remote clients are made before any request (their version given): a version pinned for one engine is
    refused by another (Docker 29 serves 1.44 and above, Docker 20.10 up to 1.41)."""
    import docker
    from fakes.engine import FakeEngine
    from tg_pipeline.compat.docker import negotiate
    engine = FakeEngine(api_versions=served)
    client = engine.client(version=pinned)
    with pytest.raises(docker.errors.APIError, match=refused):
        client.containers.list()
    assert negotiate(client, timeout=5) == spoken
    assert client.containers.list() == [] and engine.calls[-1].version == spoken
