"""The local Docker engine (one client per process, imported without the SDK's paramiko transport) and
the plain engine questions every stage asks: is that image there."""
from __future__ import annotations
import functools
import os
from tg_pipeline.compat.docker import docker
from tg_pipeline.errors import DockerUnavailable


DEFAULT_SOCKET = 'unix:///var/run/docker.sock'


@functools.lru_cache(maxsize=None)
def local_engine() -> docker.DockerClient:
    """The engine that DOCKER_HOST (or the default socket) names; one client per process."""
    try:
        client = docker.from_env()  # asks the engine its API version: no engine, no client (no ping needed)
    except docker.errors.DockerException as e:
        where = os.environ.get('DOCKER_HOST')
        hint = ('start one (sudo dockerd, or scripts/setup_docker.sh on Debian) or point DOCKER_HOST at it'
                if not where else 'start the engine there, or point DOCKER_HOST at one that runs (unset DOCKER_HOST '
                                  'for this machine\'s default socket)')
        raise DockerUnavailable(f'no Docker engine answers at {where or DEFAULT_SOCKET}'
                                f'{" (DOCKER_HOST)" if where else ""}: {_cause(e)}', hint=hint) from None
    return client


def _cause(error: BaseException, depth: int = 0) -> str:
    """The innermost OS error's text in a chain of wrapped exceptions (requests wraps them in arguments)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    inner = [a for a in getattr(error, 'args', ()) if isinstance(a, BaseException)]
    inner += [e for e in (error.__cause__, error.__context__) if e is not None]
    for e in inner if depth < 8 else []:
        found = _cause(e, depth + 1)
        if found:
            return found
    return str(error) if depth == 0 else ''


def image_exists(client, image_id: str) -> bool:
    try:
        client.api.inspect_image(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True
