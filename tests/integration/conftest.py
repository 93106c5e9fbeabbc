"""Fixtures of the integration tier: the real local engine, the test remote (``target``: which host, registry and
engine socket, tests/target.py; its engine through that socket, for the assertions; doit reaches it over SSH), and
the two-node swarm (scripts/setup_docker.sh, setup_remote.sh, setup_swarm.sh). Outside CI a test whose engine or
host is missing is skipped, saying why; under CI (CI=true) it fails instead (:func:`conftest.need`).

Every test here is marked ``docker`` (tests/conftest.py), so ``-m "not docker"`` leaves this folder out. A
helper a module here shares with its fast counterpart lives in that one and is imported from it (``from
unit.test_inputs import sdist_of``): the fast tier never imports this folder.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conftest import PROJECTS, need, wait_for
from target import STATE, TARGET  # noqa: F401 (STATE: the tests here import it from this module)


def engine_error() -> str | None:
    try:
        import docker
        docker.from_env().ping()
    except Exception as e:  # anything: the reason goes into the skip message
        return f'{type(e).__name__}: {e}'
    return None


@pytest.fixture(scope='session')
def docker_client():
    need(engine_error(), 'a Docker engine', 'scripts/setup_docker.sh')
    import docker
    return docker.from_env()


def read_env_file(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition('=')
        values[key.strip()] = value.strip()
    return values


def target_problem(login) -> str | None:
    """Why the test remote's sshd cannot be reached from here, or None (a proxied destination: not checked)."""
    if login.proxied:
        return None
    try:
        socket.create_connection((login.hostname, login.port), timeout=3).close()
    except OSError as e:
        return f'its sshd at {login.hostname} port {login.port} does not answer: {e}'
    return None


@pytest.fixture(scope='session')
def target():
    """The test target (tests/target.py), its SSH destination resolved by OpenSSH and its sshd answering."""
    try:
        problem = target_problem(TARGET.login())
    except RuntimeError as e:
        problem = str(e)
    need(problem, f'the test remote {TARGET.remote}', 'scripts/setup_remote.sh (or set TG_TEST_REMOTE)')
    return TARGET


@pytest.fixture(scope='session')
def remote_docker(target, docker_client):
    """The remote engine, through the socket the target gives (for the tests' own checks)."""
    import docker
    need(None if target.remote_docker else 'TG_TEST_REMOTE_DOCKER is empty', "the remote engine's socket",
         'scripts/setup_remote.sh (or set TG_TEST_REMOTE_DOCKER)')
    client = docker.DockerClient(base_url=target.remote_docker)
    assert client.info()['DockerRootDir'] != docker_client.info()['DockerRootDir']  # separate image stores
    return client


@pytest.fixture(scope='session')
def swarm(docker_client, remote_docker):
    try:
        nodes = [n for n in docker_client.nodes.list() if n.attrs['Status']['State'] == 'ready']
    except Exception as e:
        nodes, problem = [], f'{type(e).__name__}: {e}'
    else:
        problem = None if len(nodes) >= 2 else f'{len(nodes)} ready node(s)'
    need(problem, 'a two-node swarm', 'scripts/setup_swarm.sh')
    return nodes


# --- held runs: a run that must still be going while a test looks at it waits for the test, never for a time ---
HOLD = 'env_files=hold.env'  # on the command line of a run of the basic project: its job waits (jobs/hold.py)
RELEASE_FILE = read_env_file(PROJECTS / 'basic' / 'hold.env')['TG_TEST_HOLD']  # in the container


def release(*containers) -> int:
    """Let held runs end: create, in each container, the file its job waits for. A container that is gone or
    no longer running is passed over (so a ``finally`` may call this too); returns how many were released."""
    import docker
    released = 0
    for container in containers:
        try:
            done = container.exec_run(['touch', RELEASE_FILE])
        except docker.errors.APIError:  # removed (404) or not running (409): nothing holds there
            continue
        assert done.exit_code == 0, done.output
        released += 1
    return released


def running_containers(project, job, *clients) -> list:
    """The running containers of ``project``'s ``job`` on those engines (a swarm run's tasks: on any node)."""
    return [c for client in clients for c in client.containers.list(filters={'label': project.labels(job)})]


def release_when_running(project, job, *clients, count=1) -> None:
    """Wait until ``count`` containers of the held ``job`` run on those engines (a swarm run's tasks start one
    by one), then release them all."""
    found = wait_for(lambda: c if len(c := running_containers(project, job, *clients)) >= count else None,
                     timeout=180, what=f'{count} running container(s) of {job}')
    assert release(*found) == len(found)
