"""The content-addressed store of what runs ran, under ``build/.provenance/``::

    build/.provenance/sdist/SHA256.tar.gz     an sdist (source roots + payload), byte for byte
    build/.provenance/config/SHA256.toml      an effective configuration, as ``doit config`` prints it
    build/.provenance/patch/SHA256.patch      the uncommitted changes under the source roots
    build/.provenance/cells/SHA256.py         the notebook cells (or script) of a job pickled by value
    build/.provenance/deps/KEY.json           a dependency set: by the dependency image's id (or its hash)

Each object is named by the sha256 of its bytes (a dependency set: by its image's id), so a thousand runs of the
same code keep one copy. Objects are written whole, then renamed into place. ``.lock`` is held shared while a
run's objects and record are written, and exclusively while :meth:`Store.sweep` removes the objects that no
kept run references (so an object a starting run has just found there is never swept under it). The folder's
name starts with a dot: no job can be called that (a job's files are in ``build/JOB/``).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
from pathlib import Path

from tg_pipeline.paths import file_sha256

KINDS = {'sdist': '.tar.gz', 'config': '.toml', 'patch': '.patch', 'cells': '.py', 'deps': '.json'}
FOLDER = '.provenance'


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



def _temporary(target: Path) -> Path:
    """A name beside ``target`` that no other process or thread writes to (several runs may keep the same object
    at once: the last rename wins, with the same bytes)."""
    return target.with_name(f'.{target.name}.{os.getpid()}.{threading.get_ident()}')


class Store:
    """The objects kept for the runs of one build folder."""

    def __init__(self, build_dir: Path):
        self.root = Path(build_dir) / FOLDER

    def path(self, kind: str, key: str) -> Path:
        if kind not in KINDS or not key or any(c in key for c in '/\\.\0'):
            raise ValueError(f'no {kind} object {key!r} in a store')
        return self.root / kind / f'{key}{KINDS[kind]}'

    def has(self, kind: str, key: str) -> bool:
        return bool(key) and self.path(kind, key).exists()

    def read(self, kind: str, key: str) -> bytes | None:
        try:
            return self.path(kind, key).read_bytes()
        except (OSError, ValueError):
            return None

    def put(self, kind: str, data: bytes, key: str = '') -> str:
        """Keep ``data`` (once: an object already there is left alone); its key (default: its sha256)."""
        key = key or sha256_of(data)
        target = self.path(kind, key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = _temporary(target)
            temporary.write_bytes(data)
            os.replace(temporary, target)
        return key

    def put_file(self, kind: str, source: Path) -> str:
        """Keep the file ``source`` (copied with its time: an image composed from the copy gets the same id)."""
        key = file_sha256(source)
        target = self.path(kind, key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = _temporary(target)
            shutil.copy2(source, temporary)
            os.replace(temporary, target)
        return key

    def size(self, kind: str, key: str) -> int:
        try:
            return self.path(kind, key).stat().st_size
        except (OSError, ValueError):
            return 0

    @contextlib.contextmanager
    def lock(self, exclusive: bool = False):
        """The store's lock: shared while objects and a record are written, exclusive while sweeping."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / '.lock', os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def objects(self):
        """(kind, key, path) of every object kept."""
        for kind, suffix in KINDS.items():
            folder = self.root / kind
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if path.name.endswith(suffix) and not path.name.startswith('.'):
                        yield kind, path.name[:-len(suffix)], path

    def sweep(self, referenced: set[tuple[str, str]]) -> tuple[int, int]:
        """Remove the objects not in ``referenced`` ((kind, key) pairs); (objects removed, bytes freed). The
        caller holds the exclusive lock while it reads the references and sweeps."""
        removed = freed = 0
        for kind, key, path in list(self.objects()):
            if (kind, key) in referenced:
                continue
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            removed, freed = removed + 1, freed + size
        return removed, freed
