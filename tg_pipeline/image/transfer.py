"""Step 5 without a registry: send the image over SSH, only the layers the remote engine lacks.

The local engine's ``docker save`` stream is read once: each ``layer.tar`` is
hashed on the way (its sha256 is the layer's diff id). Layers the remote
already has are dropped; the rest, with the image config and manifest, are
sent as one ``docker load`` archive to the remote engine through the run's SSH
connection. ``docker load`` takes layers it already has from its own store
(it looks each layer up by chain id before it reads the file), so the archive
needs only the missing blobs.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field


from tg_pipeline.compat.docker import docker
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import RemoteError

CHUNK = 1 << 20


@dataclass
class TransferStats:
    layers_total: int = 0
    layers_sent: int = 0
    bytes_sent: int = 0
    sent: list = field(default_factory=list)

    def summary(self) -> str:
        from tg_pipeline.console.units import format_bytes
        return f'{self.layers_sent} of {self.layers_total} layers sent, {format_bytes(self.bytes_sent)} over SSH'


def remote_layers(client: docker.DockerClient, known: dict | None = None) -> set[str]:
    """Diff ids of every layer of every image the engine has.

    The image list gives no layers, so each image is inspected, one request each; ``known`` (image id ->
    its diff ids, updated here) spares the images seen before: an image id is the digest of the image's
    config, which lists its layers, so they never change.
    """
    known = {} if known is None else known
    found = set()
    for image in client.api.images(quiet=True):
        if image not in known:
            try:
                known[image] = client.api.inspect_image(image)['RootFS'].get('Layers', [])
            except docker.errors.NotFound:
                continue
        found.update(known[image])
    return found


class _StreamReader(io.RawIOBase):
    """A file object over the chunks of a streamed HTTP body."""

    def __init__(self, chunks):
        self.chunks, self.buffer = iter(chunks), b''

    def readable(self):
        return True

    def readinto(self, target):
        while not self.buffer:
            try:
                self.buffer = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self.buffer))
        target[:n], self.buffer = self.buffer[:n], self.buffer[n:]
        return n


KNOWN_IMAGES_KEPT = 5000  # image id -> layers entries kept (the oldest go first)


def _cache_path(name: str = 'layer_ids.json') -> str:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return os.path.join(base, 'tg_pipeline', name)


def _load_cache(name: str = 'layer_ids.json') -> dict:
    """The cache ``name``; {} when it is missing or of another shape (a layer id cache maps to diff ids, the image
    cache to lists of them): it is only a cache, rebuilt as the images are seen again."""
    from tg_pipeline.paths import list_of, read_json
    found = read_json(_cache_path(name))
    kind = list_of(str) if name == 'image_layers.json' else (lambda v: isinstance(v, str))
    if not isinstance(found, dict) or not all(kind(v) for v in found.values()):
        return {}
    return found


def _save_cache(cache: dict, name: str = 'layer_ids.json') -> None:
    path = _cache_path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}'
    with open(tmp, 'w') as file:
        json.dump(cache, file)
    os.replace(tmp, path)


def _archive(local: docker.DockerClient, image_id: str, reference: str, have: set[str], stats: TransferStats,
             progress, cache: dict) -> tempfile.SpooledTemporaryFile:
    """The filtered ``docker load`` archive, spooled (to disk past 64 MB).

    ``cache`` maps a save's layer folder name (a v1 id: a function of the layer chain, the same in
    every image that has that chain) to the layer's diff id, so known layers are not hashed again.
    """
    out = tempfile.SpooledTemporaryFile(max_size=64 << 20)
    source = tarfile.open(fileobj=io.BufferedReader(_StreamReader(local.api.get_image(image_id)), CHUNK), mode='r|')
    with tarfile.open(fileobj=out, mode='w|') as target:
        for member in source:
            data = source.extractfile(member) if member.isfile() else None  # None: a folder, a link
            if member.name == 'manifest.json' and data is not None:
                manifest = json.load(data)
                for entry in manifest:
                    entry['RepoTags'] = [reference]
                body = json.dumps(manifest).encode()
                member.size = len(body)
                target.addfile(member, io.BytesIO(body))
            elif member.name == 'repositories':
                continue  # legacy file; the manifest's RepoTags tag the image
            elif member.name.endswith('/layer.tar') and data is not None:  # (a repeated layer's is a link)
                stats.layers_total += 1
                v1_id = member.name.split('/')[0]
                if cache.get(v1_id) in have:
                    progress(f'transfer: layer {cache[v1_id][7:19]} already on the remote')
                    continue  # the stream skips its bytes unread
                spool = tempfile.SpooledTemporaryFile(max_size=512 << 20)
                digest = hashlib.sha256()
                while chunk := data.read(CHUNK):
                    digest.update(chunk)
                    spool.write(chunk)
                diff_id = cache[v1_id] = 'sha256:' + digest.hexdigest()
                if diff_id in have:
                    progress(f'transfer: layer {diff_id[7:19]} already on the remote')
                    spool.close()
                    continue
                spool.seek(0)
                target.addfile(member, spool)
                spool.close()
                stats.layers_sent += 1
                stats.sent.append(diff_id)
                progress(f'transfer: layer {diff_id[7:19]} to send ({member.size / 1e6:.2f} MB)')
            else:
                target.addfile(member, data)
    out.seek(0)
    return out


def transfer(local: docker.DockerClient, remote: docker.DockerClient, image_id: str, reference: str,
             console: Console = CONSOLE, host: str = 'the remote', summary: bool = True) -> TransferStats:
    """Make ``image_id`` present on ``remote`` as ``reference``; send only what it lacks (``summary``: end with
    a line saying what was sent; the caller that sends more afterwards says it for both)."""
    stats = TransferStats()
    bar = console.progress('transfer')  # the layers' lines as its note, then the bytes sent

    def progress(line):
        if line.startswith('transfer: layer'):
            bar.note(line[len('transfer: '):])
        elif not console.quiet:
            bar.close(summary='')
            console.print(line)
    try:
        if remote.images.get(image_id).id == image_id:
            remote.api.tag(image_id, *reference.rsplit(':', 1))
            stats.layers_total = len(local.api.inspect_image(image_id)['RootFS']['Layers'])
            progress(f'transfer: {host} has the image already: nothing sent')
            return stats
    except docker.errors.ImageNotFound:
        pass
    known = _load_cache('image_layers.json')
    have = remote_layers(remote, known)
    _save_cache(dict(list(known.items())[-KNOWN_IMAGES_KEPT:]), 'image_layers.json')
    cache = _load_cache()
    archive = _archive(local, image_id, reference, have, stats, progress, cache)
    _save_cache(cache)

    bar.total = archive.seek(0, os.SEEK_END)
    archive.seek(0)
    bar.note(f'{stats.layers_sent} of {stats.layers_total} layers to {host}')

    def chunks():
        sent = 0
        while chunk := archive.read(CHUNK):
            sent += len(chunk)
            stats.bytes_sent = sent
            yield chunk
            bar.update(len(chunk))
    try:
        for event in remote.api.load_image(chunks()):
            if 'error' in event:
                raise RemoteError(f'{host} could not load the image: {event["error"]}', command='docker load')
    except docker.errors.APIError as e:
        raise RemoteError(f'{host} could not load the image: {e.explanation or e}', command='docker load') from None
    finally:
        archive.close()
        bar.close(summary='')
    try:  # by id: another process may have re-pointed the tag since (tags are for people)
        remote.api.inspect_image(image_id)
    except docker.errors.ImageNotFound:
        raise RemoteError(f'{host} did not keep image {image_id[:19]} after loading it', command='docker load') \
            from None
    if summary:
        progress(f'transfer: {stats.summary()}')
    return stats


def send_job_image(local: docker.DockerClient, remote: docker.DockerClient, image, tag: str, deps_tag: str,
                   console: Console = CONSOLE, host: str = 'the remote') -> TransferStats:
    """Make the composed job ``image`` (:class:`~tg_pipeline.image.compose.Composed`) present on ``remote``: its
    config and code layer go as one small ``docker load``; ``docker save`` runs only when the engine says it
    lacks a dependency layer (the first run, or after the requirements changed), and then sends only the layers
    it lacks. No listing of the remote's images on the way: a code edit costs an inspect and a load."""
    from tg_pipeline.image.compose import MissingLayers, load
    from tg_pipeline.image.job_image import place
    stats = TransferStats(layers_total=len(image.base_layers) + 1)

    try:  # the remote usually has the dependency layers: then this is all that travels
        sent = place(remote, image, tag, host)
        if not sent:
            console.print(f'transfer: {host} has the image already: nothing sent')
            return stats
    except MissingLayers:  # it lacks some: the dependency image first (only the layers it lacks), then again
        deps_id = json.loads(image.config)['config']['Image']
        deps = transfer(local, remote, deps_id, deps_tag, console, host, summary=False)
        stats.layers_sent, stats.bytes_sent, stats.sent = deps.layers_sent, deps.bytes_sent, list(deps.sent)
        sent = load(remote, image, tag, host)
    stats.layers_sent += 1
    stats.bytes_sent += sent
    stats.sent.append(image.diff_id)  # (and, the first time, the base code layer below it)
    console.print(f'transfer: {stats.summary()}')
    return stats
