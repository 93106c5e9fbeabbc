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


def engine_started_at(client):
    """When the engine (``client``'s) started, as an aware datetime, or None when it cannot be told. The engine
    makes its default network, ``bridge``, anew each time it starts (unless it restores running containers:
    live-restore), so that network's creation time is the engine's start."""
    try:
        networks = client.api.networks(names=['bridge'])
    except docker.errors.APIError:
        return None
    found = [n for n in networks if n.get('Name') == 'bridge' and n.get('Driver') == 'bridge']
    return api_time(found[0].get('Created')) if found else None


def api_time(text):
    """An RFC 3339 time of the Engine API (``2026-12-07T00:16:33.618982682Z``, or with an offset) as an aware
    datetime; None for none or the zero time."""
    import datetime
    import re
    found = re.fullmatch(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)', text or '')
    if not found or text.startswith('0001-'):
        return None
    head, fraction, zone = found.groups()
    moment = datetime.datetime.fromisoformat(f'{head}.{(fraction or "0")[:6].ljust(6, "0")}'
                                             f'{"+00:00" if zone == "Z" else zone}')
    return moment


def image_exists(client, image_id: str) -> bool:
    try:
        client.api.inspect_image(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True
