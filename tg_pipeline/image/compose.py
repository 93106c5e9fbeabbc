"""The job image without ``docker build``: the code layer appended to the dependency image.

A job image is its dependency image (base + ``pip install -r requirements.txt``, built by the engine only
when the requirements change) plus ONE layer: the sdist unpacked under ``/opt/tg_pipeline/``. That layer and
the image's config (the dependency image's config with the job's labels, ``PYTHONPATH`` and ``CMD``, and the
layer's diff id appended to ``rootfs``) are written here, the way ko, jib and ``crane append`` add a layer to
a base, and handed to an engine as a ``docker load`` archive that holds only the config and the new layer:
``docker load`` takes every layer whose chain it already has from its own store (it looks each one up by
chain id before it opens the file the manifest names), so the dependency layers never travel.

The image id is the sha256 of the config bytes, so the same bytes loaded on two engines give the same id on
both: that is how a run names its image exactly, here and on the remote.

The entry point's own modules (``MODULE/__init__.py``, ``__main__.py``, ``_tg_runtime/*.py``: every run imports
them, whatever its job) go into the layer compiled as well, as checked hash-based ``.pyc`` files (PEP 552) for
this Python's cache tag: a container then does not compile them at each start (about 10 ms of every run). Python
checks each one against its source's hash; an image whose Python has another cache tag never looks at them. The
job's own modules stay source only: the one a code edit changed would be compiled here instead of there, no faster.
"""
from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tg_pipeline.errors import BuildError
from tg_pipeline.package import tree
from tg_pipeline.paths import write_if_changed
from tg_pipeline.runtime.protocol import RUNTIME_PACKAGE

PREFIX = 'opt/tg_pipeline/'  # where the sdist is unpacked, as ADD unpacked it
DEPS_LABEL = 'tg_pipeline.deps'  # on a dependency image: the job it was built for (a job image drops it)


class MissingLayers(BuildError):
    """The engine lacks a layer below the code layer (it opened the file the manifest names, which is not
    in the archive): the dependency image must go there first."""


@dataclass(frozen=True)
class Composed:
    """A job image, ready to load: its config bytes, its top code layer's file and diff id, the layers below it, and
    of those our own (``lower``: the base code layer below a delta, (diff id, file)), which an engine may lack."""
    config: bytes
    layer: Path
    diff_id: str
    base_layers: tuple[str, ...]
    lower: tuple = ()

    @property
    def image_id(self) -> str:
        return 'sha256:' + hashlib.sha256(self.config).hexdigest()


def code_layer(sdist: Path, target: Path) -> str:
    """Write the code layer (an uncompressed tar of the sdist's files under /opt/tg_pipeline/) to ``target``;
    return its diff id. The sdist is byte-reproducible, and so is the layer: same code, same diff id."""
    raw = io.BytesIO()
    with tarfile.open(sdist, 'r:gz') as source, \
            tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as layer:
        first = source.next()
        mtime = int(first.mtime) if first else 0
        for folder in ('opt', PREFIX.rstrip('/')):
            layer.addfile(tree.tar_info(folder, tarfile.DIRTYPE, 0o755, mtime))
        member, made = first, set[str]()
        while member is not None:
            _add(layer, member, source.extractfile(member) if member.isfile() else None, made)
            member = source.next()
    body = raw.getvalue()
    write_if_changed(target, body)  # atomic: another doit process may read or write it at the same time
    return 'sha256:' + hashlib.sha256(body).hexdigest()


def _add(layer: tarfile.TarFile, member: tarfile.TarInfo, body, made: set[str]) -> None:
    """A member of the sdist into the layer under /opt/tg_pipeline/; a module of the entry point's with its
    compiled form beside it (see the module doc). ``made``: the ``__pycache__`` folders the layer has (an engine
    refuses a layer that names a path twice)."""
    name = member.name
    member.name = PREFIX + name
    if body is None or not _entry_module(name):
        layer.addfile(member, body)
        return
    source = body.read()
    layer.addfile(member, io.BytesIO(source))
    compiled = compiled_module(source, '/' + member.name)
    if compiled is not None:
        folder, _, base = member.name.rpartition('/')
        if folder not in made:
            made.add(folder)
            layer.addfile(tree.tar_info(f'{folder}/__pycache__', tarfile.DIRTYPE, 0o755, int(member.mtime)))
        info = tree.tar_info(f'{folder}/__pycache__/{base[:-3]}.{sys.implementation.cache_tag}.pyc', tarfile.REGTYPE,
                             0o644, int(member.mtime), len(compiled))
        layer.addfile(info, io.BytesIO(compiled))


def _entry_module(name: str) -> bool:
    """``MODULE-VERSION/MODULE/__init__.py``, ``__main__.py`` or ``_tg_runtime/*.py`` of an sdist: the modules every
    run imports."""
    parts = name.split('/')
    return name.endswith('.py') and (len(parts) == 3 and parts[2] in ('__init__.py', '__main__.py')
                                     or len(parts) == 4 and parts[2] == RUNTIME_PACKAGE)


def compiled_module(source: bytes, path: str) -> bytes | None:
    """``source`` as a checked hash-based ``.pyc`` (PEP 552: magic, flags, the source's hash, the marshalled code)
    for this Python; None for a Python without a cache tag. The same source gives the same bytes."""
    import importlib.util
    import marshal
    if sys.implementation.cache_tag is None:
        return None
    code = compile(source, path, 'exec', dont_inherit=True)
    flags = (0b11).to_bytes(4, 'little')  # hash-based, checked
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)


SQUASH_MIN = 1 << 20  # a delta up to this size (tar bytes) stays a delta, whatever the base's size
SQUASH_PART = 8  # else it stays while it is at most 1/8 of the base


@dataclass(frozen=True)
class Layering:
    """Where the code layers of a job live: the sdist's index, the base layer and its record, the delta."""
    index: Path
    base: Path
    record: Path
    delta: Path


def code_layers(sdist: Path, layering: Layering) -> list[tuple[str, Path]]:
    """Our code layers, bottom first, as (diff id, file): the base layer (the whole sdist under /opt/tg_pipeline/,
    made when none fits), and above it, when files changed since that base, a delta layer of those files (whiteouts
    for the removed ones), as ko and jib layer files by how often they change. A delta that grows past
    max(SQUASH_MIN, base / SQUASH_PART) is squashed: a new base holds everything. Every layer's bytes are a function
    of the files it holds and of the base it stands on, so the image id stays the sha256 of what is in it."""
    index = tree.read_index(layering.index)
    record = tree.read_index(layering.record)
    members = {entry['name']: entry for entry in index.get('members', [])}
    fits = (members and record.get('sdist') == index.get('sdist') and layering.base.is_file()
            and layering.base.stat().st_size == record.get('size'))
    if fits:
        held = record.get('members') or {}
        changed = [entry for name, entry in sorted(members.items()) if held.get(name) != entry['sha256']]
        removed = sorted(set(held) - set(members))
        if not changed and not removed:
            return [(record['diff_id'], layering.base)]
        if sum(entry['tar'] for entry in changed) <= max(SQUASH_MIN, record['size'] // SQUASH_PART):
            return [(record['diff_id'], layering.base), (delta_layer(sdist, changed, removed, layering.delta),
                                                         layering.delta)]
    diff_id = code_layer(sdist, layering.base)
    if members:
        write_if_changed(layering.record, tree.index_bytes({
            'version': tree.INDEX_VERSION, 'sdist': index.get('sdist'), 'diff_id': diff_id,
            'size': layering.base.stat().st_size, 'members': {name: entry['sha256'] for name, entry in members.items()}}))
    return [(diff_id, layering.base)]


def delta_layer(sdist: Path, changed: list[dict], removed: list[str], target: Path) -> str:
    """The layer of the ``changed`` files (their pieces of the sdist, by its index) and whiteouts for the
    ``removed`` ones, under /opt/tg_pipeline/; its diff id."""
    data = Path(sdist).read_bytes()
    raw = io.BytesIO()
    made: set[str] = set()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as layer:
        for entry in changed:
            with tarfile.open(fileobj=io.BytesIO(tree.piece(data, entry)), mode='r:') as piece:
                for member in piece:
                    _add(layer, member, piece.extractfile(member) if member.isfile() else None, made)
        for name in removed:
            folder, _, base = name.rpartition('/')
            info = tree.tar_info(f'{PREFIX}{folder}/.wh.{base}', tarfile.REGTYPE, 0o644, 0)
            layer.addfile(info, io.BytesIO(b''))
    blob = raw.getvalue()
    write_if_changed(target, blob)
    return 'sha256:' + hashlib.sha256(blob).hexdigest()


def _history(deps: dict, history: list[dict]) -> list[dict]:
    """The dependency image's history in config form (oldest first), when it accounts for its layers exactly;
    else none (``docker history`` then shows the job's own entry only)."""
    entries = []
    for item in reversed(history):
        created = datetime.datetime.fromtimestamp(item.get('Created') or 0, datetime.timezone.utc)
        entry = {'created': created.strftime('%Y-%m-%dT%H:%M:%SZ'), 'created_by': item.get('CreatedBy') or ''}
        if item.get('Comment'):
            entry['comment'] = item['Comment']
        if not item.get('Size'):
            entry['empty_layer'] = True
        entries.append(entry)
    layers = deps.get('RootFS', {}).get('Layers') or []
    return entries if sum(not e.get('empty_layer') for e in entries) == len(layers) else []


def image_config(deps: dict, history: list[dict], diff_id: str, labels: dict, env: dict, cmd: list[str],
                 created: str, lower: tuple = ()) -> bytes:
    """The job image's config: ``deps`` (the dependency image's inspect) with the job's labels, env and command,
    and the code layer ``diff_id`` on top. Deterministic: same inputs, same bytes, same image id."""
    config = dict(deps.get('Config') or {})
    config['Image'] = deps['Id']
    names = set(env)
    config['Env'] = [e for e in config.get('Env') or [] if e.split('=', 1)[0] not in names] + \
        [f'{k}={v}' for k, v in env.items()]
    config['Cmd'] = list(cmd)
    config['Labels'] = {**{k: v for k, v in (config.get('Labels') or {}).items() if k != DEPS_LABEL}, **labels}
    document = {
        'architecture': deps.get('Architecture') or 'amd64', 'os': deps.get('Os') or 'linux',
        **({'variant': deps['Variant']} if deps.get('Variant') else {}),
        'created': created, 'config': config,
        'rootfs': {'type': 'layers', 'diff_ids': [*(deps.get('RootFS', {}).get('Layers') or []), *lower, diff_id]},
        'history': [*_history(deps, history),
                    *({'created': created, 'created_by': 'tg_pipeline: code layer, files as of its base'} for _ in lower),
                    {'created': created, 'created_by': f'tg_pipeline: code layer {labels.get("tg_pipeline.module", "")}'
                                                      + (', files changed since the base' if lower else '')}],
    }
    return json.dumps(document, sort_keys=True, separators=(',', ':')).encode()


def compose(client, deps_id: str, sdist: Path, layer_file: Path, labels: dict, env: dict, cmd: list[str],
            layering: Layering | None = None) -> Composed:
    """The job image over the dependency image ``deps_id`` of ``client``'s engine; ``created`` is the sdist's
    time (it changes with the code and only then, so an unchanged job composes to the same image id). With a
    ``layering``, the code is a base layer and a delta (:func:`code_layers`), else one layer in ``layer_file``."""
    layers = code_layers(sdist, layering) if layering is not None else [(code_layer(sdist, layer_file), layer_file)]
    (diff_id, top), lower = layers[-1], tuple(layers[:-1])
    deps = client.api.inspect_image(deps_id)
    history = client.api.history(deps_id)
    stamp = datetime.datetime.fromtimestamp(int(sdist.stat().st_mtime), datetime.timezone.utc)
    created = stamp.strftime('%Y-%m-%dT%H:%M:%SZ')
    config = image_config(deps, history, diff_id, labels, env, cmd, created, tuple(d for d, _ in lower))
    return Composed(config, top, diff_id, tuple(deps['RootFS']['Layers']) + tuple(d for d, _ in lower), lower)


def load_archive(image: Composed, tag: str, lower: bool = False) -> bytes:
    """A gzipped ``docker load`` archive of ``image`` with only its config and top code layer in it (``lower``: and
    our code layers below it): the manifest names a file for every layer, but the engine opens only those of chains
    it lacks (see the module doc)."""
    config_name = image.image_id.split(':')[1] + '.json'
    layer_names = [f'{d.split(":")[1]}/layer.tar' for d in image.base_layers] + ['code/layer.tar']
    manifest = json.dumps([{'Config': config_name, 'RepoTags': [tag] if tag else [], 'Layers': layer_names}]).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w') as tar:
        for name, data in ((config_name, image.config), ('manifest.json', manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for diff_id, path in (image.lower if lower else ()):
            tar.add(str(path), f'{diff_id.split(":")[1]}/layer.tar')
        tar.add(str(image.layer), 'code/layer.tar')
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def load(client, image: Composed, tag: str, host: str = 'this engine') -> int:
    """Load ``image`` into ``client``'s engine as ``tag`` (the engine must have the dependency layers); return
    the bytes sent. The top code layer goes alone first; our layers below it follow only when the engine says it
    lacks them. The engine's answer is checked by id: tags are for people."""
    sent = 0
    for lower in (False, True) if image.lower else (False,):
        data = load_archive(image, tag, lower)
        sent += len(data)
        try:
            _send(client, data, image, host)
            return sent
        except MissingLayers:
            if lower or not image.lower:
                raise
    return sent


def _send(client, data: bytes, image: Composed, host: str) -> None:
    import docker.errors
    try:
        for event in client.api.load_image(data):
            if 'error' in event:
                raise _load_error(host, event['error'])
        client.api.inspect_image(image.image_id)
    except docker.errors.ImageNotFound:
        raise BuildError(f'{host} did not keep the job image {image.image_id[:19]} after loading it',
                         command='docker load') from None
    except docker.errors.APIError as e:
        raise _load_error(host, str(e.explanation or e)) from None


def _load_error(host: str, message: str) -> BuildError:
    kind = MissingLayers if 'layer.tar' in message and 'no such file' in message else BuildError
    return kind(f'{host} could not load the job image: {message}', command='docker load')
