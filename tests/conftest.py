"""Shared by both tiers: fixture projects copied to a temp folder, doit run as a user would, waiting for a
condition, and the fake engine of the fast tier.

Two tiers, by folder. ``tests/unit/`` is the fast tier: no engine, no SSH, no registry, no pip install, no
crowd of doit processes (the fake engine of ``tests/fakes/`` under the real docker-py client, config,
packaging, command-line errors); ``pytest tests/unit`` runs it. ``tests/integration/`` is the rest, against the
real engines, the simulated remote host, the registry and the swarms (its fixtures:
``tests/integration/conftest.py``). :func:`pytest_collection_modifyitems` marks ``docker`` every test of
``tests/integration/``, so ``pytest -m "not docker"`` selects the same fast tier; a test of ``tests/unit/``
that asks for an engine fixture (or is marked ``remote``/``slow``) stops the collection: it belongs in
``tests/integration/``.

Outside CI an integration test whose engine or host is missing is skipped, with the reason; under CI
(CI=true) it fails instead (:func:`need`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forked_doit import Doit
from target import fill

REPO = Path(__file__).resolve().parent.parent
PROJECTS = Path(__file__).resolve().parent / 'projects'
IN_CI = os.environ.get('CI') == 'true'
_DOIT = Doit()


def job_names(project: str = 'basic') -> str:
    """The jobs a fixture project declares, as errors list them: sorted, comma-separated."""
    import tomllib
    with open(PROJECTS / project / 'pipeline.toml', 'rb') as file:
        return ', '.join(sorted(tomllib.load(file)['jobs']))


def need(condition_error: str | None, what: str, setup: str):
    if condition_error is None:
        return
    message = f'{what} is not available ({condition_error}); run {setup}'
    if IN_CI:
        pytest.fail('CI must run this test for real: ' + message)
    pytest.skip(message)


# fixtures that reach a real engine, the SSH host or the registry (tests/integration/conftest.py)
ENGINE_FIXTURES = frozenset({'docker_client', 'remote_docker', 'target'})
UNIT = Path(__file__).resolve().parent / 'unit'
INTEGRATION = Path(__file__).resolve().parent / 'integration'


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The fast tier (every test path under tests/unit) runs on two worker processes when pytest-xdist is
    there (a test extra): most of its time is doit processes started and waited for. ``-n 0`` (or ``-p
    no:xdist``) runs it in one process; an explicit ``-n`` is kept; the integration tier is never split."""
    if hasattr(config, 'workerinput') or not config.pluginmanager.hasplugin('xdist'):
        return None
    if config.option.numprocesses is not None or config.option.collectonly:
        return None
    paths = [Path(str(arg).split('::')[0]).resolve() for arg in config.args]
    if paths and all(path.is_relative_to(UNIT) for path in paths):
        config.option.numprocesses = min(2, os.cpu_count() or 1)
        if config.option.maxschedchunk is None:  # a few tests at a time: the longest, first (LONGEST_FIRST), spread
            config.option.maxschedchunk = 2
    return None


# The fast tier's longest tests, longest first (seconds of one run; the first in a fresh clone): on two workers
# they start first and are handed out a few at a time, so that neither worker is left with one of them at the end.
LONGEST_FIRST = (
    'tests/unit/test_time_limit.py::',  # ~1.2 s each, mostly waiting for the limit
    'tests/unit/test_types.py::test_the_import_check_works_without_the_names_python_3_10_added',
    'tests/unit/test_docs.py::test_the_docs_build_strictly',
    'tests/unit/test_what_ran.py::test_attached_runs_keep_what_ran_and_show_runs_diff_and_export_say_it',
    'tests/unit/test_ux.py::test_doit_help_lists_the_settings_of_a_task_with_their_values_now',
    'tests/unit/test_ux.py::test_graph_draws_the_chosen_job_and_marks_what_would_run_now',
    'tests/unit/test_import_check.py::',
    'tests/unit/test_what_ran.py::',
    'tests/unit/test_ux.py::',
    'tests/unit/test_bad_input.py::',
    'tests/unit/test_cli_errors.py::',
    'tests/unit/test_never_silent.py::',
    'tests/unit/test_types.py::',  # (the rest: reading the installed distributions, ~0.5 s)
    'tests/unit/test_inputs.py::',
    'tests/unit/test_light_imports.py::',
    'tests/unit/test_reporting.py::',
)


MYPY_TEST = 'tests/unit/test_types.py::test_the_package_type_checks'
# run beside the tests by the first worker: python -m mypy in the root, its outcome written (JSON) when it ends
_MYPY_RUN = ('import json, os, subprocess, sys; r = subprocess.run([sys.executable, "-m", "mypy"], cwd=sys.argv[1], '
             'capture_output=True, text=True); open(sys.argv[2] + ".part", "w").write(json.dumps({"returncode": '
             'r.returncode, "stdout": r.stdout, "stderr": r.stderr})); os.replace(sys.argv[2] + ".part", sys.argv[2])')


def mypy_outcome_file(config) -> Path | None:
    """Where the mypy started at collection writes its outcome: a file of the run's temp folder, which both workers
    share (each has a folder of its own in it); None without workers (the test then runs mypy itself)."""
    if not hasattr(config, 'workerinput') or not config.option.basetemp:
        return None
    return Path(config.option.basetemp).parent / 'mypy-outcome.json'


def pytest_collection_finish(session):
    """On two workers mypy (~4 s of CPU without its cache) starts as soon as the tests are collected, beside them,
    and its test, run last, reads what it said: no worker waits for it meanwhile."""
    config, outcome = session.config, mypy_outcome_file(session.config)
    if outcome is None or config.workerinput['workerid'] != 'gw0' or MYPY_TEST not in {i.nodeid for i in session.items}:
        return
    import atexit
    process = subprocess.Popen([sys.executable, '-c', _MYPY_RUN, str(REPO), str(outcome)])
    atexit.register(process.wait)  # (the test may be the other worker's: it is not ended early)


def _longest_first(item) -> int:
    if item.nodeid == MYPY_TEST:  # (last: mypy runs beside the tests meanwhile, see pytest_collection_finish)
        return len(LONGEST_FIRST) + 1
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
    """Mark ``docker`` every test of tests/integration. A test of tests/unit that uses an engine fixture
    (directly or through another fixture), or carries ``remote`` or ``slow``, is refused: ``pytest tests/unit``
    and ``pytest -m "not docker"`` are the same fast tier. (Every test that drives Docker through doit asks
    for one of those fixtures; the doit tests without one stop before any task touches an engine (bad config,
    list, graph, config) or run no engine task (serialize, sdist).)"""
    misplaced = []
    for item in items:
        path = Path(str(item.path))
        needs_more = ENGINE_FIXTURES & set(getattr(item, 'fixturenames', ())) or item.get_closest_marker('remote') \
            or item.get_closest_marker('slow')
        if needs_more and path.is_relative_to(UNIT):
            misplaced.append(item.nodeid)
        if path.is_relative_to(INTEGRATION) or needs_more:
            item.add_marker(pytest.mark.docker)
    if misplaced:
        raise pytest.UsageError('these tests need an engine, the SSH host, the registry, a pip install or many '
                                'doit processes; move them to tests/integration/:\n  ' + '\n  '.join(misplaced))
    if hasattr(config, 'workerinput'):  # (every worker orders them alike: xdist checks)
        items.sort(key=_longest_first)


class Project:
    """A fixture project in a temp folder, driven through the doit command line."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def id(self) -> str:
        """The project id its runs are labelled with (tg_pipeline.project): a shared engine holds others' too."""
        from tg_pipeline import config
        return config.load(self.path('pipeline.toml'), environ={}).project

    def labels(self, job: str) -> list[str]:
        """Label filters for this project's containers/services of ``job``."""
        return [f'tg_pipeline.job={job}', f'tg_pipeline.project={self.id}']

    def read(self, relative: str) -> str:
        return self.path(relative).read_text()

    def write(self, relative: str, text: str) -> None:
        self.path(relative).parent.mkdir(parents=True, exist_ok=True)
        self.path(relative).write_text(text)

    def edit(self, relative: str, old: str, new: str) -> None:
        text = self.read(relative)
        assert old in text, f'{old!r} not in {relative}'
        self.write(relative, text.replace(old, new))

    def env(self, extra: dict | None = None) -> dict:
        """The environment of doit: this one, with the worktree on PYTHONPATH, and EXAMPLE_VARIABLE set as
        scripts/demo.sh sets it (the basic project's [run] env names it, and a run stops when it is unset;
        a test of its absence removes it)."""
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
        env.setdefault('EXAMPLE_VARIABLE', 'TEST')
        env.pop('TG_PIPELINE_CONFIG', None)
        env.update(extra or {})
        return env

    def doit(self, *args: str, env: dict | None = None, check: bool = True, timeout: float = 600):
        """``python -m doit ARGS`` in the project, its output captured. In the fast tier the process is forked from
        one that has imported doit and tg_pipeline.tasks already (tests/forked_doit.py), else started anew."""
        if os.environ.get('PYTEST_CURRENT_TEST', '').startswith('tests/unit/'):
            result = _DOIT.run(args, self.root, self.env(env), self.env(), timeout)
        else:
            result = subprocess.run([sys.executable, '-m', 'doit', *args], cwd=self.root, env=self.env(env),
                                    capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f'doit {" ".join(args)} exited {result.returncode}\n'
                                 f'--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}')
        return result

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, '-m', 'doit', *args], cwd=self.root, env=self.env(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def copy_project(name: str, destination: Path) -> Project:
    """Fixture project ``name`` copied into ``destination``, the test target's remote and registry written into
    its pipeline.toml (tests/target.py)."""
    copied = destination / name
    shutil.copytree(PROJECTS / name, copied, symlinks=False)
    project = Project(copied)
    if (copied / 'pipeline.toml').exists():
        fill(copied / 'pipeline.toml')
        _note_project(project)
    return project


# --- the images a session's projects left: removed at its end, from the engines it used ------------------------
MADE_PROJECTS: set[str] = set()  # the project ids (tg_pipeline.project) of the fixture projects this process made


def _note_project(project: Project) -> None:
    try:
        MADE_PROJECTS.add(project.id)
    except Exception:  # noqa: BLE001 - a fixture project of a broken configuration builds no image
        pass


def pytest_sessionfinish(session, exitstatus):
    """Each test project has an id of its own (its temp folder's path): its images, and only those, are removed
    from the engines at the end of a session that used engines, so that a day of test runs does not leave
    thousands of images behind (every engine operation then slows down)."""
    if not MADE_PROJECTS or not any(item.get_closest_marker('docker') for item in session.items):
        return
    import threading
    from target import TARGET
    sockets = [None, *(s for s in (TARGET.remote_docker, TARGET.swarm_head_docker, TARGET.swarm_worker_docker) if s)]
    threads = [threading.Thread(target=_remove_images, args=(socket, sorted(MADE_PROJECTS)), daemon=True)
               for socket in dict.fromkeys(sockets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)


def _remove_images(socket: str | None, projects: list[str]) -> None:
    import docker
    try:
        client = docker.from_env(timeout=60) if socket is None else docker.DockerClient(base_url=socket, timeout=60)
        client.ping()
    except Exception:  # noqa: BLE001 - an engine this machine does not have: nothing of ours there
        return
    from concurrent.futures import ThreadPoolExecutor
    from tg_pipeline.image.housekeeping import PROJECT_LABEL
    ours = set(projects)
    found = [image['Id'] for image in client.api.images(all=True, filters={'label': PROJECT_LABEL})
             if (image.get('Labels') or {}).get(PROJECT_LABEL) in ours]  # one listing: thousands may be there

    def remove(image: str) -> None:
        try:
            client.api.remove_image(image, force=True)
        except Exception:  # noqa: BLE001 - gone already (with its child), or still used by a container: left
            pass
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(remove, found))
    client.close()


@pytest.fixture
def project_factory(tmp_path):
    return lambda name='basic': copy_project(name, tmp_path)


@pytest.fixture
def project(tmp_path) -> Project:
    return copy_project('basic', tmp_path)


def wait_for(predicate, timeout=60, what='condition'):
    """The first true value of ``predicate()``, asked every 0.2 s; fails after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f'timed out waiting for {what}')


def ran(output: str, task: str) -> bool:
    """Whether ``task`` ran or was up to date, by our reporter's lines (``STEP:JOB  0.31 s``, a streamed step's
    name alone, ``-- up to date: STEP, ... [JOB]``) or doit's own (``.  TASK`` ran, ``-- TASK`` up to date)."""
    from tg_pipeline.workflow.reporter import ran_steps, up_to_date_steps
    lines = output.splitlines()
    if f'.  {task}' in lines or task in lines or task in ran_steps(output):
        return True
    assert f'-- {task}' in lines or task in up_to_date_steps(output), \
        f'{task} is neither run nor up to date in:\n{output}'
    return False


# --- the fast tier (tests/unit): a fake Docker engine under the real docker-py client ----------------------
@pytest.fixture
def engine():
    """A fresh fake engine; a test module overrides this fixture to program it."""
    from fakes.engine import FakeEngine
    return FakeEngine()


@pytest.fixture
def client(engine):
    """A real docker.DockerClient talking to ``engine``."""
    return engine.client()


# --- what a doit process loads ------------------------------------------------------------------------------
HEAVY = {'paramiko', 'fabric', 'jinja2'}
_PROBE = ('import atexit, runpy, sys\n'
          'atexit.register(lambda: sys.stderr.write("LOADED " + " ".join(sorted({name.split(".")[0] for name, module '
          'in list(sys.modules.items()) if module is not None})) + "\\n"))\n'
          'sys.argv = ["doit", *sys.argv[1:]]\n'
          'runpy.run_module("doit", run_name="__main__", alter_sys=True)\n')


def imported_tops(project, *args: str, env: dict | None = None) -> set[str]:
    """The top-level packages loaded in a ``doit ARGS`` process in ``project`` (sys.modules when it exits)."""
    result = subprocess.run([sys.executable, '-c', _PROBE, *args], cwd=project.root, env=project.env(env),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = [line for line in result.stderr.splitlines() if line.startswith('LOADED ')]
    assert len(loaded) == 1, result.stderr
    tops = set(loaded[0].split()[1:])
    assert 'doit' in tops and 'tg_pipeline' in tops
    return tops
