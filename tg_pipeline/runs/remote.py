"""Step 6c: run the job's image on the remote Docker host, over one SSH connection.

The remote pulls the pushed image (skipped when it already has that image
id), then the container runs exactly as in a local run: env values as API
JSON, limits applied, output streamed live, exit code propagated.
"""
from __future__ import annotations

import dataclasses

import docker

from tg_pipeline.errors import RegistryError
from tg_pipeline.image.registry import Progress
from tg_pipeline.ssh import Remote, RemoteTarget
from tg_pipeline.runs.container import RunSpec, run_container


def pull(client: docker.DockerClient, reference: str, image_id: str, auth=None, silent: bool = False,
         host: str = 'the remote') -> bool:
    """Make ``reference`` (built here as ``image_id``) present on ``client``'s engine; False when it was."""
    try:
        if client.images.get(reference).id == image_id:
            return False
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = reference.rpartition(':')
    progress = Progress('pull', silent)
    try:
        for event in client.api.pull(repository, tag, stream=True, decode=True, auth_config=auth):
            if 'error' in event:
                raise _pull_error(reference, event['error'], host, progress)
            progress.event(event)
    except docker.errors.APIError as e:
        raise _pull_error(reference, str(e.explanation or e), host, progress) from None
    pulled = client.images.get(reference).id
    if pulled != image_id:
        raise RegistryError(
            f'the registry serves {pulled[:19]} for {reference}, not the image built here ({image_id[:19]})',
            hint='someone pushed the same name:version: give this job its own version (or image_prefix)')
    return True


def _pull_error(reference: str, message: str, host: str, progress: Progress) -> RegistryError:
    registry = reference.split('/')[0]
    lower = message.lower()
    if 'unauthorized' in lower or 'denied' in lower or 'authentication required' in lower:
        hint = f'{host} was refused by {registry}: configure username_env/password_env in [registry]'
    elif 'http response to https client' in lower:
        hint = f'{registry} speaks plain HTTP: add it to "insecure-registries" of the Docker engine on {host}'
    else:
        hint = f'{host} cannot pull from {registry}: check that the registry address resolves and is reachable ' \
               f'from there (doit check_remote)'
    return RegistryError(f'pulling {reference} on {host} failed: {message}', command=f'docker pull {reference}',
                         output='\n'.join(progress.log + [message]), hint=hint)


def run_remote(spec: RunSpec, target: RemoteTarget, reference: str, image_id: str, auth=None,
               silent: bool = False, log_dir=None, detach: bool = False, transfer: str = 'registry',
               on_interrupt: str = 'stop') -> dict:
    """Bring the image over (registry pull, or ``transfer='ssh'``: only the missing layers, straight
    over the SSH connection), then run ``spec`` there; raise JobFailed when the job fails."""
    with Remote(target) as remote:
        host = remote.connection.host
        if transfer == 'ssh':
            from tg_pipeline import engine
            from tg_pipeline.image.transfer import transfer as send
            send(engine.local(), remote.docker, image_id, reference, silent, host=host)
        else:
            pull(remote.docker, reference, image_id, auth, silent, host=host)
        remote_spec = dataclasses.replace(spec, image=reference)
        return run_container(remote.docker, remote_spec, where=f'remote {remote.name}', silent=silent,
                             log_dir=log_dir, detach=detach, on_interrupt=on_interrupt)
