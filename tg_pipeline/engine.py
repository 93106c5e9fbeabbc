"""Docker engine clients: the local one from the environment, errors mapped to ours."""
from __future__ import annotations

import functools

import docker
from docker.errors import DockerException

from .errors import DockerUnavailable


@functools.lru_cache(maxsize=None)
def local() -> docker.DockerClient:
    """The engine that DOCKER_HOST (or the default socket) names; one client per process."""
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as e:
        raise DockerUnavailable(
            f'no Docker engine answers here ({e})',
            hint='start one (sudo dockerd, or scripts/setup_docker.sh on Debian) or point DOCKER_HOST at it') from None
    return client


def image_exists(client: docker.DockerClient, image_id: str, tag: str | None = None) -> bool:
    try:
        image = client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return False
    return tag is None or tag in image.tags
