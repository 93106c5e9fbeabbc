"""The dependency set a run had: ``name==version`` of every distribution installed in its dependency image (read
once, in a short-lived container of that image, when it is built, and kept in the store by the image's id), with
the Dockerfile and requirements.txt it was built from and the base image's digest; for an attached run, this
Python's own distributions."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tg_pipeline.provenance.store import Store, sha256_of

# run in the dependency image: its Python and its distributions (importlib.metadata: no pip needed there)
LISTING = ('import importlib.metadata as m, json, sys\n'
           'names = {(d.metadata["Name"] or "?") + "==" + (d.version or "?") for d in m.distributions()}\n'
           'print(json.dumps({"python": sys.version.split()[0], "packages": sorted(names, key=str.lower)}))\n')
PURPOSE_LABEL = 'tg_pipeline.purpose'


def image_key(image_id: str) -> str:
    """The store's key of a dependency image's set: its id's hex digits."""
    return image_id.split(':', 1)[-1]


def base_of(dockerfile: str) -> str:
    """The base image a Dockerfile's first FROM names."""
    found = re.search(r'^\s*FROM\s+(\S+)', dockerfile, re.MULTILINE | re.IGNORECASE)
    return found.group(1) if found else ''


def listing(client, image_id: str, project: str) -> dict:
    """{python, packages} inside ``image_id``, from a container of it (removed at once)."""
    labels = {'tg_pipeline.project': project, PURPOSE_LABEL: 'dependency-set'}
    output = client.containers.run(image_id, ['python', '-c', LISTING], remove=True, stdout=True, stderr=False,
                                   network_disabled=True, labels=labels)
    return json.loads(output.decode('utf-8', 'replace').strip().splitlines()[-1])


def base_identity(client, base_image: str) -> dict:
    """The base image's id and registry digest as the engine has them ({} when it has no such image)."""
    try:
        attrs = client.api.inspect_image(base_image)
    except Exception:  # noqa: BLE001 - a base image gone since: its name is still said
        return {}
    digests = attrs.get('RepoDigests') or []
    return {'base_id': attrs.get('Id', ''), 'base_digest': digests[0] if digests else ''}


def ensure_recorded(client, image_id: str, context_dir, store: Store, project: str = '', engine: str = '',
                    console=None) -> str:
    """Keep the dependency set of the dependency image ``image_id`` (on ``client``'s engine) unless it is kept
    already; its key in the store ('' when it could not be read: said on ``console``, never an error)."""
    key = image_key(image_id)
    if store.has('deps', key):
        return key
    try:
        dockerfile = (Path(context_dir) / 'Dockerfile').read_text()
        requirements = (Path(context_dir) / 'requirements.txt').read_text()
    except OSError:
        return ''
    base = base_of(dockerfile)
    record: dict[str, Any] = {'image_id': image_id, 'engine': engine, 'base_image': base, 'dockerfile': dockerfile,
              'requirements': requirements}
    try:
        record.update(listing(client, image_id, project), **base_identity(client, base))
    except Exception as e:  # noqa: BLE001 - a run goes on without it; the record says why it is missing
        record.update(packages=None, error=f'{type(e).__name__}: {e}')
        if console is not None:
            console.warn(f'note: the dependency set of image {image_id[7:19]} could not be read ({record["error"]})')
    return store.put('deps', json.dumps(record, indent=1, sort_keys=True).encode(), key)


def here(store: Store) -> str:
    """Keep this Python's distributions (an attached run's dependency set); its key."""
    from importlib import metadata
    names = {f'{d.metadata["Name"] or "?"}=={d.version or "?"}' for d in metadata.distributions()}
    record = {'python': sys.version.split()[0], 'packages': sorted(names, key=str.lower), 'base_image': '',
              'engine': 'this Python', 'executable': sys.executable}
    data = json.dumps(record, indent=1, sort_keys=True).encode()
    return store.put('deps', data, 'here-' + sha256_of(data)[:40])


def read(store: Store, key: str) -> dict | None:
    data = store.read('deps', key) if key else None
    try:
        found = json.loads(data) if data else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
