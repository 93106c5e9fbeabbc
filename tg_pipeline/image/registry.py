"""Step 5: push the job image to the registry (its exact tag and its name for people), and pull it by digest.

The target file records the pushed digest; the task is up to date while the
registry still serves that digest for the tag and the local image is the same.
Credentials come from the environment variables that ``[registry]`` names and
travel as API headers, never on a command line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


from tg_pipeline.compat.docker import TRANSPORT_ERRORS, docker
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.hosts.engine import local_engine
from tg_pipeline.errors import ConfigError, RegistryError
from tg_pipeline.paths import read_record, write_if_changed


def remote_reference(registry: str, tag: str) -> str:
    """``registry/name:version`` for a local tag ``name:version``."""
    if not registry:
        raise ConfigError('no registry configured', key='registry.address',
                          hint='set address in [registry] of pipeline.toml (e.g. "registry.example.com:5000"), '
                               'or registry=... on the command line')
    return f'{registry.rstrip("/")}/{tag}'


def auth_config(registry, environ=None) -> dict | None:
    """Credentials from the env variables that [registry] names (``registry``: RegistrySettings)."""
    environ = os.environ if environ is None else environ
    user_var, password_var = registry.username_env, registry.password_env
    if not user_var and not password_var:
        return None
    missing = [v for v in (user_var, password_var) if v and v not in environ]
    if missing:
        raise ConfigError(f'registry credentials: environment variable {missing[0]} is not set',
                          key='registry.username_env' if missing[0] == user_var else 'registry.password_env',
                          hint=f'export {missing[0]}=... before running, or remove it from [registry]')
    return {'username': environ.get(user_var, ''), 'password': environ.get(password_var, '')}


class LayerProgress:
    """A push or pull stream's layers: their bytes summed into ONE progress bar (:class:`tg_pipeline.console.progress.
    Progress`), each layer's status changes kept for error messages (``log``), never printed one by one."""

    MOVING = ('Pushing', 'Downloading')
    MOVED = ('Pushed', 'Download complete', 'Pull complete')
    THERE = ('Layer already exists', 'Already exists')

    def __init__(self, verb: str, console: Console = CONSOLE, keep: bool = False):
        self.verb = verb
        self.bar = console.progress(verb, keep=keep)
        self.layers: dict[str, str] = {}
        self.new: set[str] = set()
        self.current: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.log: list[str] = []

    def event(self, event: dict) -> None:
        layer, status = event.get('id'), event.get('status', '')
        if 'error' in event or not status or status.startswith('Pulling from'):
            return
        detail = event.get('progressDetail') or {}
        if layer and status in self.MOVING and detail.get('total'):
            self.total[layer] = detail['total']
            self.current[layer] = min(detail.get('current') or 0, detail['total'])
        elif layer and status in self.MOVED:
            self.new.add(layer)
            if layer in self.total:
                self.current[layer] = self.total[layer]
        if layer and self.layers.get(layer) == status:
            self.bar.set(sum(self.current.values()), sum(self.total.values()) or None)
            return
        if layer:
            self.layers[layer] = status
        self.log.append(f'{self.verb}: {layer + " " if layer else ""}{status}')
        self.bar.set(sum(self.current.values()), sum(self.total.values()) or None)
        self.bar.note(f'{layer[:12]} {status}' if layer else status)

    def summary(self) -> str:
        """``1 of 7 layers sent, 5.9 kB`` (push) / ``3 of 7 layers new, 45.0 MB in 3.2 s, 14.1 MB/s`` (pull)."""
        done = 'sent' if self.verb == 'push' else 'new'
        text = f'{len(self.new)} of {len(self.layers)} layers {done}'
        return text + (f', {self.bar.summary()}' if self.bar.done else '')

    def close(self, what: str = '') -> None:
        """The bar ends with ``WHAT: summary`` (nothing when the stream failed: ``close('')`` is not called)."""
        self.bar.close(summary=f'{what}: {self.summary()}' if what else self.summary())


def registry_digest(client: docker.DockerClient, reference: str, auth=None) -> str | None:
    """The digest the registry serves for ``reference``, or None when it has none (or cannot be asked)."""
    try:
        return client.api.inspect_distribution(reference, auth_config=auth)['Descriptor']['digest']
    except (docker.errors.APIError, *TRANSPORT_ERRORS):  # then push runs, and says what is wrong
        return None


def exact_tag(tag: str, image_id: str) -> str:
    """The registry tag of exactly this build: ``VERSION-IMAGEID12``. Two builds of one name:version (two
    clones, two branches) never push to the same exact tag, whatever order their pushes land in."""
    return f'{tag}-{image_id.split(":")[-1][:12]}'


def push(image_id: str, reference: str, target: Path | None = None, auth=None, console: Console = CONSOLE,
         client=None) -> str:
    """Push ``image_id`` as ``reference``'s repository with its exact tag (see :func:`exact_tag`), then as
    ``reference`` itself (the name for people, which another build may re-point at any time); return the
    exact tag's digest and record it in ``target``. Runs pull that digest, never the name for people."""
    client = client or local_engine()
    repository, _, tag = reference.rpartition(':')
    progress = LayerProgress('push', console)  # one bar for both tags (the second sends no layer)
    try:
        digest = _push_tag(client, image_id, repository, exact_tag(tag, image_id), auth, progress, reference)
        _push_tag(client, image_id, repository, tag, auth, progress, reference)
    except BaseException:
        progress.bar.close(summary='')
        raise
    progress.close(reference)
    if target is not None:
        write_if_changed(Path(target), json.dumps({'reference': reference, 'digest': digest, 'image_id': image_id,
                                                   'exact': f'{repository}:{exact_tag(tag, image_id)}'},
                                                  indent=1).encode())
    return digest


def _push_tag(client, image_id: str, repository: str, tag: str, auth, progress, reference: str) -> str:
    """Push one tag; errors name ``reference``, the name the user knows."""
    client.api.tag(image_id, repository, tag)
    digest = None
    try:
        for event in client.api.push(repository, tag, stream=True, decode=True, auth_config=auth):
            if 'error' in event:
                raise _push_error(reference, event['error'], progress)
            progress.event(event)
            aux = event.get('aux')
            if isinstance(aux, dict) and aux.get('Digest'):
                digest = aux['Digest']
    except docker.errors.APIError as e:
        raise _push_error(reference, str(e.explanation or e), progress) from None
    except TRANSPORT_ERRORS as e:
        raise _push_error(reference, silent_engine(e, client), progress) from None
    if digest is None:
        raise RegistryError(f'the push of {reference} finished without a digest', output='\n'.join(progress.log))
    return digest


def silent_engine(error: Exception, client) -> str:
    """What a transport error of a push or pull means: the engine stopped answering (read timeout: it waits on the
    registry), or the connection to it broke."""
    text = str(error)
    if 'timed out' in text.lower():
        seconds = getattr(getattr(client, 'api', None), 'timeout', None)
        span = f'{seconds:g} s' if isinstance(seconds, (int, float)) else 'a while'
        return f'the Docker engine sent nothing for {span} (timeout): it waits on the registry, which does not answer'
    return f'the connection to the Docker engine broke ({type(error).__name__}: {text})'


def _push_error(reference: str, message: str, progress: LayerProgress) -> RegistryError:
    registry = reference.split('/')[0]
    lower = message.lower()
    if 'no basic auth credentials' in lower:
        hint = (f'the registry {registry} wants a login: set username_env/password_env in [registry] '
                '(the names of the env variables holding them) and export those variables')
    elif 'unauthorized' in lower or 'authentication required' in lower or 'denied' in lower:
        hint = (f'the registry {registry} refused the credentials: check the values of the variables that '
                'username_env/password_env in [registry] name')
    elif 'connection refused' in lower or 'no such host' in lower or 'timeout' in lower or 'dial tcp' in lower:
        hint = f'the registry {registry} is unreachable from this Docker engine: check [registry] address'
    elif 'http response to https client' in lower:
        hint = f'{registry} speaks plain HTTP: add it to "insecure-registries" of this engine (daemon.json)'
    else:
        hint = None
    return RegistryError(f'pushing {reference} failed: {message}', command=f'docker push {reference}',
                         output='\n'.join(progress.log + [message]), hint=hint)


# push.json, as :func:`push` records it
PUSH_RECORD = {'reference': str, 'digest': str, 'image_id': str, 'exact?': str}


def recorded_push(target: Path, image_id: str) -> str | None:
    """The digest our last push of ``image_id`` recorded (None when that image was not pushed, or the record is of
    another shape)."""
    record = read_record(target, PUSH_RECORD) or {}
    return record.get('digest') if record.get('image_id') == image_id else None


def push_up_to_date(target: Path, image_target: Path, client=None, auth=None, reference: str = '') -> bool:
    """doit uptodate check: same local image as last push (to ``reference``, when given: another registry is
    another push), and the registry still has its digest."""
    from tg_pipeline.image.build import recorded_image
    record, image = read_record(target, PUSH_RECORD), recorded_image(image_target)
    if record is None or image is None or record['image_id'] != image['image_id']:
        return False
    if reference and record['reference'] != reference:
        return False
    exact = record.get('exact') or record['reference']
    return registry_digest(client or local_engine(), exact, auth) == record['digest']


def pull(client: docker.DockerClient, reference: str, image_id: str, auth=None, console: Console = CONSOLE,
         host: str = 'the remote', digest: str | None = None) -> bool:
    """Make the image built here as ``image_id`` present on ``client``'s engine; False when it was.

    With ``digest`` (what our push recorded) it is pulled as ``repository@digest``: exactly the manifest we
    pushed, even when someone has re-pointed the tag since. The run then uses the image id, never the tag."""
    try:
        client.api.inspect_image(image_id)
        return False
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = reference.rpartition(':')
    if digest:
        tag = digest
    progress = LayerProgress('pull', console, keep=True)  # inside a run step: its own line
    try:
        for event in client.api.pull(repository, tag, stream=True, decode=True, auth_config=auth):
            if 'error' in event:
                raise _pull_error(reference, event['error'], host, progress)
            progress.event(event)
    except docker.errors.APIError as e:
        progress.bar.close(summary='')
        raise _pull_error(reference, str(e.explanation or e), host, progress) from None
    except TRANSPORT_ERRORS as e:
        progress.bar.close(summary='')
        raise _pull_error(reference, silent_engine(e, client), host, progress) from None
    except BaseException:
        progress.bar.close(summary='')
        raise
    progress.close(f'{reference} on {host}')
    pulled = client.images.get(f'{repository}@{digest}' if digest else reference).id
    if pulled != image_id:
        raise RegistryError(
            f'the registry serves {pulled[:19]} for {reference}, not the image built here ({image_id[:19]})',
            hint='someone pushed the same name:version: give this job its own version (or image_prefix)')
    if digest:  # a name for people on the remote, as a registry pull by tag would have left
        client.api.tag(image_id, repository, reference.rpartition(':')[2])
    return True


def _pull_error(reference: str, message: str, host: str, progress: LayerProgress) -> RegistryError:
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
