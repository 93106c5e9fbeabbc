"""Docker engine clients: the local one from the environment, errors mapped to ours."""
from __future__ import annotations

import functools
import sys


def _import_docker_sdk() -> None:
    """Import the Docker SDK without its paramiko-based ssh:// transport (~0.13 s of imports).

    Local runs never need it; :mod:`tg_pipeline.remote` imports that transport (and paramiko)
    itself when a remote run needs it. The SDK guards that import with ``except ImportError``.
    """
    if 'docker' in sys.modules or 'paramiko' in sys.modules:
        return
    sys.modules['paramiko'] = None  # makes `import paramiko` raise ImportError, just this once
    try:
        import docker  # noqa: F401
    finally:
        del sys.modules['paramiko']


_import_docker_sdk()

import docker  # noqa: E402
from docker.errors import DockerException  # noqa: E402

from tg_pipeline.errors import DockerUnavailable


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
