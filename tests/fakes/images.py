"""Image endpoints of the fake engine: list, inspect, tag, remove, build, and the registry ones
(push, pull, distribution inspect), each answering with the engine's JSON or progress stream."""
from __future__ import annotations

import base64
import dataclasses
import fnmatch
import io
import json
import shlex
import tarfile

from .containers import Abort, filter_values
from .state import FakeImage, FakeRegistry, digest, normalize, split_reference
from .wire import Reply


@dataclasses.dataclass
class BuildFailure:
    """A programmed build failure (``FakeEngine.fail_build``)."""
    tag: str | None  # builds of this tag (normalized), or every build
    error: str | None  # the error event's message; default: the engine's "returned a non-zero code"
    output: tuple = ()  # lines the failing step prints first (pip's complaint, say)
    code: int = 1
    step: str | None = None  # the failing step: the first whose line holds this text; default the first RUN


@dataclasses.dataclass
class BuildRecord:
    """One build the engine was asked for (``FakeEngine.builds``)."""
    tags: list
    dockerfile: str
    files: dict  # the context: name -> bytes
    labels: dict  # the ``labels`` argument
    buildargs: dict
    image_id: str | None = None  # set when the build succeeded


def dockerfile_steps(text: str) -> list[tuple[str, str, str]]:
    """(INSTRUCTION, arguments, line) of each step: comments dropped, continuations joined."""
    steps, pending = [], ''
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith('#')):
            continue
        if line.rstrip().endswith('\\'):
            pending += line.rstrip()[:-1] + ' '
            continue
        line, pending = (pending + line).strip(), ''
        instruction, _, arguments = line.partition(' ')
        steps.append((instruction.upper(), arguments.strip(), line))
    return steps


def key_values(arguments: str) -> dict:
    """``LABEL a=1 b="two words"`` (or the old ``LABEL key value``) as a dict."""
    tokens = shlex.split(arguments)
    if tokens and all('=' in t for t in tokens):
        return dict(t.split('=', 1) for t in tokens)
    return {tokens[0]: ' '.join(tokens[1:])} if tokens else {}


def failing_step(steps: list, failure: BuildFailure | None) -> int | None:
    """Index of the step a programmed failure stops at: the first whose line holds ``failure.step``,
    else the first RUN, else the last step."""
    if failure is None:
        return None
    for index, (instruction, _, line) in enumerate(steps):
        if (failure.step in line) if failure.step else instruction == 'RUN':
            return index
    return len(steps) - 1


def decode_auth(header: str | None) -> dict | None:
    """The X-Registry-Auth header docker-py sends: URL-safe base64 of JSON."""
    if not header:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(header + '=' * (-len(header) % 4)))
    except ValueError:
        return None


def error_event(message: str) -> dict:
    return {'errorDetail': {'message': message}, 'error': message}


class ImageRoutes:
    """Mixed into FakeEngine, which provides ``images``, ``registries``, ``builds``, ``build_failures``,
    ``containers``, ``now()``, ``store_image()``, ``registry()``."""

    def find_image(self, ref: str) -> FakeImage | None:
        """By id (``sha256:...`` or a unique hex prefix), by ``name:tag`` (``:latest`` implied), by digest."""
        if not ref:
            return None
        if ref.startswith('sha256:'):
            matches = [i for i in self.images.values() if i.id.startswith(ref)]
            return matches[0] if len(matches) == 1 else None
        wanted = normalize(ref)
        for image in self.images.values():
            if wanted in image.tags or wanted in image.digests:
                return image
        if all(c in '0123456789abcdef' for c in ref) and len(ref) >= 4:
            matches = [i for i in self.images.values() if i.id[7:].startswith(ref)]
            return matches[0] if len(matches) == 1 else None
        return None

    def _image(self, ref: str) -> FakeImage:
        image = self.find_image(ref)
        if image is None:
            raise Abort(Reply.error(404, f'No such image: {ref}'))
        return image

    def images_list(self, call):
        filters = call.json_param('filters', {}) or {}
        found = list(self.images.values())
        for key, value in filters.items():
            values = filter_values(value)
            if key == 'reference':
                found = [i for i in found if any(fnmatch.fnmatch(t, v) or fnmatch.fnmatch(t, normalize(v))
                                                 for t in i.tags for v in values)]
            elif key == 'label':
                found = [i for i in found if all(
                    w.partition('=')[0] in i.labels and (not w.partition('=')[1] or
                                                         i.labels[w.partition('=')[0]] == w.partition('=')[2])
                    for w in values)]
            elif key == 'dangling':
                found = [i for i in found if (not i.tags) == (str(values[0]).lower() in ('true', '1'))]
            else:
                return Reply.error(400, f"invalid filter '{key}'")
        users = [c.image.id for c in self.containers.values()]
        return Reply.json([i.summary(users.count(i.id)) for i in found])

    def image_inspect(self, call, name):
        return Reply.json(self._image(name).inspect())

    def image_history(self, call, name):
        image = self._image(name)
        return Reply.json([{'Id': '<missing>', 'Created': int(image.created.timestamp()), 'CreatedBy': f'layer {i}',
                            'Size': image.layer_size, 'Comment': '', 'Tags': None}
                           for i in reversed(range(len(image.layers)))])

    def image_load(self, call):
        """Like an engine with the containerd image store: it wants every blob in the archive."""
        return Reply.error(500, 'content digest sha256:0000: not found')

    def image_tag(self, call, name):
        image = self._image(name)
        self.tag_image(image, f'{call.params["repo"]}:{call.params.get("tag") or "latest"}')
        return Reply.empty(201)

    def tag_image(self, image: FakeImage, reference: str) -> None:
        """Give ``image`` the tag, taking it from any image that had it (which may be left dangling)."""
        reference = normalize(reference)
        for other in self.images.values():
            if reference in other.tags and other is not image:
                other.tags.remove(reference)
        if reference not in image.tags:
            image.tags.append(reference)

    def image_remove(self, call, name):
        image, force = self._image(name), call.flag('force')
        by_tag = normalize(name) in image.tags
        if by_tag and len(image.tags) > 1:
            image.tags.remove(normalize(name))
            return Reply.json([{'Untagged': normalize(name)}])
        if not by_tag and len(image.tags) > 1 and not force:
            return Reply.error(409, f'conflict: unable to delete {image.id[7:19]} (must be forced) - image is '
                                    'referenced in multiple repositories')
        user = next((c for c in self.containers.values() if c.image.id == image.id), None)
        if user and not force:
            return Reply.error(409, f'conflict: unable to remove repository reference "{name}" (must force) - '
                                    f'container {user.id[:12]} is using its referenced image {image.id[7:19]}')
        del self.images[image.id]
        return Reply.json([{'Untagged': t} for t in image.tags] + [{'Deleted': image.id}])

    def image_build(self, call):
        with tarfile.open(fileobj=io.BytesIO(call.body or b''), mode='r:*') as tar:
            files = {m.name.removeprefix('./'): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        dockerfile = call.params.get('dockerfile') or 'Dockerfile'
        if dockerfile not in files:
            return Reply.error(500, f'Cannot locate specified Dockerfile: {dockerfile}')
        tags = filter_values(call.params.get('t') or [])
        record = BuildRecord(tags, files[dockerfile].decode(), files, call.json_param('labels', {}) or {},
                             call.json_param('buildargs', {}) or {})
        self.builds.append(record)
        failure = next((f for f in self.build_failures if f.tag is None or f.tag in map(normalize, tags)), None)
        return Reply.events(self._build_events(record, failure))

    def _build_events(self, record: BuildRecord, failure: BuildFailure | None):
        steps = dockerfile_steps(record.dockerfile)
        failing = failing_step(steps, failure)
        base = self.find_image(steps[0][1].split()[0]) if steps and steps[0][0] == 'FROM' else None
        labels, env = dict(base.labels) if base else {}, list(base.env) if base else []
        layers, cmd = list(base.layers) if base else ['sha256:' + digest('base', steps[0][1])], None
        context = digest(*sorted((n, digest(d)) for n, d in record.files.items()))
        chain = digest('from', layers)
        for index, (instruction, arguments, line) in enumerate(steps):
            yield {'stream': f'Step {index + 1}/{len(steps)} : {line}\n'}
            if index == failing:
                yield from self._failed_step(failure, arguments, chain)
                return
            chain = digest(chain, line, context if instruction in ('COPY', 'ADD') else '')
            if instruction in ('RUN', 'COPY', 'ADD'):
                layers.append('sha256:' + digest('layer', chain))
            elif instruction == 'LABEL':
                labels.update(key_values(arguments))
            elif instruction == 'ENV':
                env = [e for e in env if e.split('=')[0] not in key_values(arguments)]
                env += [f'{k}={v}' for k, v in key_values(arguments).items()]
            elif instruction == 'CMD':
                cmd = json.loads(arguments) if arguments.startswith('[') else ['/bin/sh', '-c', arguments]
            yield {'stream': f' ---> {chain[:12]}\n'}
        labels.update(record.labels)
        image_id = 'sha256:' + digest('image', chain, json.dumps(labels, sort_keys=True))
        image = self.store_image(FakeImage(image_id, [], labels, layers, self.now(), env, cmd or (base and base.cmd)))
        for tag in record.tags:
            self.tag_image(image, tag)
        record.image_id = image_id
        yield {'aux': {'ID': image_id}}
        yield {'stream': f'Successfully built {image_id[7:19]}\n'}
        for tag in record.tags:
            yield {'stream': f'Successfully tagged {normalize(tag)}\n'}

    def _failed_step(self, failure: BuildFailure, arguments: str, chain: str):
        yield {'stream': f' ---> Running in {digest("run", chain)[:12]}\n'}
        for line in failure.output:
            yield {'stream': line.rstrip('\n') + '\n'}
        message = failure.error or f"The command '/bin/sh -c {arguments}' returned a non-zero code: {failure.code}"
        yield {'errorDetail': {'code': failure.code, 'message': message}, 'error': message}

    def image_push(self, call, name):
        tag = call.params.get('tag') or 'latest'
        image = self.find_image(f'{name}:{tag}')
        if image is None:
            return Reply.error(404, f'An image does not exist locally with the tag: {name}')
        host, path, _ = split_reference(f'{name}:{tag}')
        registry = self.registry(host)
        if registry.error_status:
            return Reply.error(registry.error_status, registry.error or 'registry error')
        return Reply.events(self._push_events(registry, name, path, tag, image, decode_auth(
            call.headers.get('X-Registry-Auth'))))

    def _push_events(self, registry: FakeRegistry, name, path, tag, image: FakeImage, auth):
        shown = f'docker.io/{path}' if registry.host == 'docker.io' else name
        yield {'status': f'The push refers to repository [{shown}]'}
        refusal = registry.refusal(auth)
        if refusal and (registry.unreachable or registry.insecure_http):
            yield error_event(refusal)
            return
        for layer in image.layers:
            yield {'status': 'Preparing', 'progressDetail': {}, 'id': layer[7:19]}
        if refusal or registry.error:
            yield error_event(refusal or registry.error)
            return
        for layer in image.layers:
            short, size = layer[7:19], image.layer_size
            if layer in registry.blobs:
                yield {'status': 'Layer already exists', 'progressDetail': {}, 'id': short}
                continue
            for current in (size // 2, size):
                yield {'status': 'Pushing', 'progressDetail': {'current': current, 'total': size}, 'id': short}
            yield {'status': 'Pushed', 'progressDetail': {}, 'id': short}
            registry.blobs.add(layer)
        manifest, size = 'sha256:' + digest('manifest', image.id), 527 + 100 * len(image.layers)
        registry.manifests[f'{path}:{tag}'] = (manifest, image)
        if f'{name}@{manifest}' not in image.digests:
            image.digests.append(f'{name}@{manifest}')
        yield {'status': f'{tag}: digest: {manifest} size: {size}'}
        yield {'progressDetail': {}, 'aux': {'Tag': tag, 'Digest': manifest, 'Size': size}}

    def image_pull(self, call):
        if 'fromImage' not in call.params:
            raise Abort(Reply.error(400, 'the fake engine pulls only (fromImage): it imports nothing'))
        repository, tag = call.params['fromImage'], call.params.get('tag') or 'latest'
        host, path, _ = split_reference(repository + ':x')
        registry = self.registry(host)
        reference = normalize(f'{repository}:{tag}')
        if registry.error_status:
            return Reply.error(registry.error_status, registry.error or 'registry error')
        refusal = registry.refusal(decode_auth(call.headers.get('X-Registry-Auth')))
        if refusal:
            return Reply.error(500, f'Head "https://{host}/v2/{path}/manifests/{tag}": {refusal}'
                               if not registry.unreachable else refusal)
        found = registry.manifests.get(f'{path}:{tag}')
        if found is None and host == 'docker.io':
            return Reply.error(404, f"pull access denied for {repository}, repository does not exist or may "
                                    "require 'docker login': denied: requested access to the resource is denied")
        if found is None:
            return Reply.error(404, f'manifest for {reference} not found: manifest unknown: manifest unknown')
        return Reply.events(self._pull_events(registry, repository, path, tag, reference, *found))

    def _pull_events(self, registry, repository, path, tag, reference, manifest, remote: FakeImage):
        yield {'status': f'Pulling from {path}', 'id': tag}
        if registry.error:
            yield error_event(registry.error)
            return
        local_layers = {layer for image in self.images.values() for layer in image.layers}
        for layer in remote.layers:
            short, size = layer[7:19], remote.layer_size
            if layer in local_layers:
                yield {'status': 'Already exists', 'progressDetail': {}, 'id': short}
                continue
            yield {'status': 'Pulling fs layer', 'progressDetail': {}, 'id': short}
            yield {'status': 'Downloading', 'progressDetail': {'current': size, 'total': size}, 'id': short}
            yield {'status': 'Download complete', 'progressDetail': {}, 'id': short}
            yield {'status': 'Pull complete', 'progressDetail': {}, 'id': short}
        yield {'status': f'Digest: {manifest}'}
        before = self.find_image(reference)
        image = self.images.get(remote.id) or self.store_image(dataclasses.replace(remote, tags=[], digests=[]))
        self.tag_image(image, reference)
        if f'{repository}@{manifest}' not in image.digests:
            image.digests.append(f'{repository}@{manifest}')
        news = 'Image is up to date' if before is image else 'Downloaded newer image'
        yield {'status': f'Status: {news} for {reference}'}

    def distribution_inspect(self, call, name):
        host, path, tag = split_reference(name)
        registry = self.registry(host)
        if registry.error_status:
            return Reply.error(registry.error_status, registry.error or 'registry error')
        refusal = registry.refusal(decode_auth(call.headers.get('X-Registry-Auth'))) or registry.error
        if refusal:
            return Reply.error(500 if registry.unreachable or registry.insecure_http or registry.error else 401,
                               refusal)
        found = registry.manifests.get(f'{path}:{tag}')
        if found is None:
            return Reply.error(404, 'manifest unknown: manifest unknown')
        manifest, image = found
        return Reply.json({'Descriptor': {'mediaType': 'application/vnd.docker.distribution.manifest.v2+json',
                                          'digest': manifest, 'size': 527 + 100 * len(image.layers)},
                           'Platforms': [{'architecture': 'amd64', 'os': 'linux'}]})
