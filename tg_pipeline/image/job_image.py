"""Step 4 on any engine: the dependency image (built by that engine, only when its inputs changed) plus the
code layer (appended here, see :mod:`tg_pipeline.image.compose`), and what is recorded of both.

``build/JOB/deps.json`` maps an engine (``local``, or ``user@host:port`` of a remote) to the dependency
image it built and the digest of the inputs it built it from (Dockerfile + requirements.txt), so that a
code edit costs one inspect of that image, never a build; a change of the requirements, or the image gone
from that engine, builds it again (the engine's own layer cache still applies).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import BuildError
from tg_pipeline.hosts.engine import image_exists
from tg_pipeline.image.build import build_image
from tg_pipeline.image.compose import DEPS_LABEL, Composed, Layering, MissingLayers, compose, load
from tg_pipeline.paths import has_shape, list_of, read_json, write_if_changed

DEPS_FILES = ['Dockerfile', 'requirements.txt']


def deps_tag(tag: str) -> str:
    """The dependency image's name for people: the job image's, with ``-deps`` after its version."""
    name, _, version = tag.rpartition(':')
    return f'{name}:{version}-deps' if name and '/' not in version else f'{tag}-deps'


def deps_key(context_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in DEPS_FILES:
        digest.update(name.encode() + b'\0' + (Path(context_dir) / name).read_bytes() + b'\0')
    return digest.hexdigest()


def ensure_deps(client, context_dir: Path, tag: str, records: Path, engine: str = 'local',
                console: Console = CONSOLE) -> tuple[str, bool]:
    """(the dependency image id on ``client``'s engine, whether it was built now)."""
    key = deps_key(context_dir)
    entry = deps_records(records).get(engine) or {}
    if entry.get('key') == key and entry.get('image_id') and image_exists(client, entry['image_id']):
        return entry['image_id'], False
    try:
        image_id = build_image(context_dir, tag, console=console, client=client, only=DEPS_FILES, host=engine)
    except BuildError as e:  # a cached step's image was removed meanwhile (someone's prune): once more
        if 'unable to find image' not in (getattr(e, 'build_log', '') or e.output_tail or ''):
            raise
        image_id = build_image(context_dir, tag, console=console, client=client, only=DEPS_FILES, host=engine)
    found = deps_records(records)  # again: another engine's entry may have been written meanwhile
    found[engine] = {'key': key, 'image_id': image_id, 'tag': tag}
    write_if_changed(Path(records), json.dumps(found, indent=1, sort_keys=True).encode())
    return image_id, True


DEPS_RECORD = {'key': str, 'image_id': str, 'tag?': str}  # one engine's entry of deps.json


def deps_records(records: Path) -> dict:
    """deps.json: engine -> the dependency image built there; entries of another shape are left out (that
    engine builds its dependency image again)."""
    found = read_json(records)
    return {engine: entry for engine, entry in found.items() if has_shape(entry, DEPS_RECORD)} \
        if isinstance(found, dict) else {}


@dataclass(frozen=True)
class JobImage:
    """A job image on an engine: its id, and how it came to be there (``composed``: loaded from our config and
    code layer, so it can be sent the same way; None: built by the engine, see :func:`build_code_layer`)."""
    image_id: str
    composed: Composed | None
    deps_built: bool


def build_job_image(client, paths, tag: str, settings: dict, engine: str = 'local', console: Console = CONSOLE,
                    host: str = 'this engine', load_here: bool = True) -> JobImage:
    """The job image on ``client``'s engine (``paths``: the job's :class:`~tg_pipeline.paths.JobPaths`,
    ``settings``: labels, env and cmd). Without ``load_here`` it is only composed (the dependency image is
    there, the config and code layer are files): for a command that sends it to another engine and runs
    nothing here."""
    deps_id, built = ensure_deps(client, paths.context, deps_tag(tag), paths.deps, engine, console)
    record_dependency_set(client, deps_id, paths, settings, engine, console)
    image = compose(client, deps_id, paths.sdist, paths.code_layer, **settings, layering=layering(paths))
    if not load_here:
        return JobImage(image.image_id, image, built)
    try:
        place(client, image, tag, host)
    except MissingLayers:
        raise
    except BuildError as e:  # an engine that takes no partial archive (e.g. Docker's containerd image store)
        console.print(f'{e.message}; the engine builds the code layer from the sdist instead, which costs a docker '
                      f'build at each code edit')
        return JobImage(build_code_layer(client, deps_id, paths, tag, settings, console), None, built)
    return JobImage(image.image_id, image, built)


def layering(paths) -> Layering | None:
    """The job's base and delta code layers (:func:`~tg_pipeline.image.compose.code_layers`): with the sdist's
    index (none for paths without it: one code layer)."""
    if getattr(paths, 'sdist_index', None) is None:
        return None
    return Layering(paths.sdist_index, paths.code_layer, paths.code_base, paths.code_delta)


def record_dependency_set(client, deps_id: str, paths, settings: dict, engine: str, console: Console) -> None:
    """What ran keeps the dependency set of every dependency image (``pip list`` of it, its base image's digest),
    read once, here, when the image is new to the store (see :mod:`tg_pipeline.provenance.dependencies`)."""
    from tg_pipeline.provenance.dependencies import ensure_recorded
    from tg_pipeline.provenance.store import Store
    project = settings.get('labels', {}).get('tg_pipeline.project', '')
    ensure_recorded(client, deps_id, Path(paths.context), Store(Path(paths.dir).parent), project, engine, console)


def build_code_layer(client, deps_id: str, paths, tag: str, settings: dict, console: Console = CONSOLE) -> str:
    """The same job image made by the engine itself: ``docker build`` of the sdist on the dependency image
    (the context holds the sdist and this Dockerfile only). Its id is the engine's; runs use it all the same."""
    labels = ' '.join(f'{k}={json.dumps(v)}' for k, v in settings['labels'].items())
    env = ' '.join(f'{k}={json.dumps(v)}' for k, v in settings['env'].items())
    dockerfile = (f'FROM {deps_id}\nLABEL {DEPS_LABEL}="" {labels}\nENV {env}\nCMD {json.dumps(settings["cmd"])}\n'
                  f'ADD {paths.sdist.name} /opt/tg_pipeline/\n')
    return build_image(paths.context, tag, console=console, client=client, only=[paths.sdist.name],
                       extra={'Dockerfile': dockerfile.encode()})


def place(client, image: Composed, tag: str, host: str = 'this engine') -> int:
    """Make ``image`` present on ``client``'s engine as ``tag``; the bytes sent (0: it was there)."""
    if image_exists(client, image.image_id):
        name, _, version = tag.rpartition(':')
        client.api.tag(image.image_id, name, version)
        return 0
    return load(client, image, tag, host)


def record_image(paths, image: JobImage, tag: str) -> None:
    """image.json (what runs use: the id) and image_config.json (what sends the image elsewhere; none for an
    image the engine built)."""
    record: dict[str, Any] = {'image_id': image.image_id, 'tag': tag}
    if image.composed is not None:
        write_if_changed(paths.image_config, image.composed.config)
        composed = image.composed
        record.update(deps_id=json.loads(composed.config)['config']['Image'], code_layer=composed.diff_id,
                      code_layers=[[d, Path(p).name] for d, p in (*composed.lower, (composed.diff_id, composed.layer))])
    elif os.path.exists(paths.image_config):
        os.unlink(paths.image_config)
    write_if_changed(paths.image, json.dumps(record, indent=1).encode())


def composed_up_to_date(client, paths) -> bool:
    """Without loading it here: the recorded composition agrees with its files, and this engine still has the
    dependency image it stands on (a transfer that finds the remote lacking a layer sends it from there)."""
    image = recorded_composed(paths)
    return image is not None and image_exists(client, json.loads(image.config)['config']['Image'])


def recorded_composed(paths) -> Composed | None:
    """The job image the last local build recorded, ready to load elsewhere (None: not built, or its files
    no longer agree)."""
    from tg_pipeline.image.build import recorded_image
    record = recorded_image(paths.image)
    try:
        config = Path(paths.image_config).read_bytes()
        document = json.loads(config)
        layers, deps_id = document['rootfs']['diff_ids'], document['config']['Image']
    except (OSError, ValueError, TypeError, KeyError):  # missing, or of another shape: as if not built
        return None
    if record is None or not has_shape({'l': layers, 'd': deps_id}, {'l': list_of(str), 'd': str}) or not layers:
        return None
    folder = Path(paths.image).parent
    ours = [(d, folder / name) for d, name in record.get('code_layers') or [[layers[-1], Path(paths.code_layer).name]]]
    image = Composed(config, ours[-1][1], layers[-1], tuple(layers[:-1]), tuple(ours[:-1]))
    if image.image_id != record.get('image_id') or not all(os.path.exists(path) for _, path in ours):
        return None
    return image
