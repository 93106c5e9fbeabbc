"""The files of a kept sdist, sorted by what they are: the source roots' files (the user's code), the payload
(``resources/*.pkl``), and what tg_pipeline generated (PKG-INFO, pyproject.toml, the entry point's package); and
``doit export``: a run's source tree written out."""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tg_pipeline.runtime import protocol

EXPORT_EXTRAS = 'what-ran'  # beside the exported source roots: payload, configuration, patch, cells, record


@dataclass
class SdistFiles:
    code: dict = field(default_factory=dict)  # path under the package (jobs/x.py) -> bytes: the source roots
    payload: dict = field(default_factory=dict)  # resource name -> bytes
    generated: dict = field(default_factory=dict)  # path in the archive, without its top folder -> bytes


def read_sdist(path: Path) -> SdistFiles:
    """The files of the sdist at ``path``, sorted by kind."""
    members = {}
    with tarfile.open(path, 'r:gz') as tar:
        for member in tar:
            file = tar.extractfile(member) if member.isfile() else None
            if file is not None:
                members[member.name] = file.read()
    return split(members)


def split(members: dict) -> SdistFiles:
    meta = next((n for n in members if n.count('/') == 2 and n.endswith('/' + protocol.META_FILE)), None)
    module = json.loads(members[meta])['module'] if meta else ''
    found = SdistFiles()
    internal = {'__init__.py', '__main__.py', protocol.META_FILE}
    for name, data in sorted(members.items()):
        _, _, inner = name.partition('/')
        head, _, rest = inner.partition('/')
        if head != module or not rest:
            found.generated[inner] = data
        elif rest.startswith(protocol.RESOURCES_DIR + '/') and rest.endswith('.pkl'):
            found.payload[rest[len(protocol.RESOURCES_DIR) + 1:-4]] = data
        elif rest in internal or rest.startswith(protocol.RUNTIME_PACKAGE + '/'):
            found.generated[inner.replace(module, 'MODULE', 1)] = data
        else:
            found.code[rest] = data
    return found


def export(files: SdistFiles, dest: Path, extras: dict[str, bytes]) -> list[Path]:
    """Write the source roots' files under ``dest`` (as they were under the project), and the payload and the
    ``extras`` (name -> bytes: configuration, patch, cells, record) under ``dest/what-ran/``; the files written."""
    written = []
    for relative, data in files.code.items():
        written.append(_write(dest / relative, data))
    for name, data in files.payload.items():
        written.append(_write(dest / EXPORT_EXTRAS / 'payload' / f'{name}.pkl', data))
    for name, data in extras.items():
        written.append(_write(dest / EXPORT_EXTRAS / name, data))
    return written


def _write(path: Path, data: bytes) -> Path:
    if '..' in path.parts:
        raise ValueError(f'{path}: a kept file would be written outside the export folder')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
