"""Fixtures of the integration tier: the real local engine, the simulated remote host (its engine through its
socket, for the assertions; doit reaches it over SSH), the registry, and the two-node swarm
(scripts/setup_docker.sh, setup_remote.sh, setup_swarm.sh). Outside CI a test whose engine or host is missing is
skipped, saying why; under CI (CI=true) it fails instead (:func:`conftest.need`).

Every test here is marked ``docker`` (tests/conftest.py), so ``-m "not docker"`` leaves this folder out. A
helper a module here shares with its fast counterpart lives in that one and is imported from it (``from
unit.test_inputs import sdist_of``): the fast tier never imports this folder.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from conftest import PROJECTS, need, wait_for

STATE = Path(os.environ.get('TG_PIPELINE_STATE', '/var/lib/tg-pipeline-test'))


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


@pytest.fixture(scope='session')
def remote_env():
    env_file = STATE / 'remote.env'
    problem = None
    if not env_file.exists():
        problem = f'{env_file} is missing'
    else:
        values = read_env_file(env_file)
        try:
            socket.create_connection((values['TG_REMOTE_HOST'], int(values['TG_REMOTE_PORT'])), timeout=3).close()
        except OSError as e:
            problem = f'sshd of the test remote does not answer: {e}'
    need(problem, 'the simulated remote host', 'scripts/setup_remote.sh')
    return values


@pytest.fixture(scope='session')
def remote_docker(remote_env, docker_client):
    import docker
    client = docker.DockerClient(base_url=remote_env['TG_REMOTE_DOCKER_HOST'])
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
