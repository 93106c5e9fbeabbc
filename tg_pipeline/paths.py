"""Every file the pipeline writes for a job, in one place.

    build/JOB/resources/NAME.pkl        payload objects (serialize)
    build/JOB/context/                  build context: sdist, Dockerfile, requirements.txt
    build/JOB/deps.json                 per engine: the dependency image built there, and from which inputs
    build/JOB/code_layer.tar            the code layer: the sdist unpacked under /opt/tg_pipeline/
    build/JOB/image_config.json         the job image's config (its sha256 is the image id)
    build/JOB/image.json                the image id the last build produced (and its tag, for people)
    build/JOB/push.json                 what was pushed: reference, digest, image id
    build/JOB/ssh_sent.json             per remote: the dependency image whose layers went there over SSH
    build/JOB/.lock                     held while a step of this job runs (one process at a time)
    build/JOB/runs/WHERE/RUN_ID.out     a run's stdout, byte for byte (.err: stderr)
    build/JOB/runs/WHERE/RUN_ID.json    how it ended (exit code, OOM, variants ...)
    build/JOB/runs/WHERE/RUN_ID/        its run folder: result.pkl, traceback.txt, output/
    build/.sources/ROOTS.txt            the source roots' manifest, which the steps depend on (package/manifest.py)
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from tg_pipeline.errors import ConfigError


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomic write that leaves an identical file untouched (keeps mtimes, so caches hold)."""
    path = Path(path)
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f'.tmp{os.getpid()}')
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def read_json(path: str | os.PathLike[str]):
    """The JSON document in ``path``; None when it is missing or unreadable (a record not written yet)."""
    try:
        return json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def has_shape(document, shape: dict) -> bool:
    """Whether ``document`` is a JSON object with every key of ``shape``, each value of its kind: a type or a
    tuple of types (``bool`` is no ``int`` here), or a predicate (value -> bool). A key ending in ``?`` may be
    missing; when there, it is checked too."""
    if not isinstance(document, dict):
        return False
    for key, kind in shape.items():
        name = key.rstrip('?')
        if name not in document:
            if key.endswith('?'):
                continue
            return False
        if not _is(document[name], kind):
            return False
    return True


def _is(value, kind) -> bool:
    if isinstance(kind, (type, tuple)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    return bool(kind(value))


def read_record(path: Path, shape: dict) -> dict | None:
    """The record in ``path`` when it is a JSON object of ``shape`` (see :func:`has_shape`), else None: a record
    that is missing, unreadable, not JSON, or of another shape (``[1,2,3]``, ``null``, ``{"image_id": 5}``)
    counts as absent, so the step that writes it runs again instead of trusting it."""
    document = read_json(path)
    return document if has_shape(document, shape) else None


def list_of(kind) -> Callable[[Any], bool]:
    """A :func:`has_shape` predicate: a list whose items are all of ``kind``."""
    return lambda value: isinstance(value, list) and all(_is(item, kind) for item in value)


def dict_of(kind) -> Callable[[Any], bool]:
    """A :func:`has_shape` predicate: an object whose values are all of ``kind``."""
    return lambda value: isinstance(value, dict) and all(_is(item, kind) for item in value.values())


def _code(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


# what a run record (RUN_ID.json) must look like to be read: a container run's exit code, or a swarm run's variants
RUN_RECORD = {'exit_code?': _code, 'signal?': _code, 'variants?': lambda v: isinstance(v, list) and all(
    isinstance(i, dict) for i in v), 'job?': str, 'module?': str, 'version?': str, 'owner?': str, 'project?': str}


class RunPaths:
    """The runs of one job on one kind of host (``where``: local, remote, swarm), collected here."""

    def __init__(self, folder: Path):
        self.dir = Path(folder)

    def out(self, run_id: str) -> Path:
        return self.dir / f'{run_id}.out'

    def err(self, run_id: str) -> Path:
        return self.dir / f'{run_id}.err'

    def record(self, run_id: str) -> Path:
        return self.dir / f'{run_id}.json'

    def run_dir(self, run_id: str) -> Path:
        return self.dir / run_id

    def left(self, run_id: str) -> Path:
        """A mark: the doit process that followed the run left it to itself on purpose (Ctrl-C with
        on_interrupt = "detach"), so its end without a record here is no sign of a killed process."""
        return self.dir / f'{run_id}.left'

    def saved_ids(self) -> set[str]:
        """Run ids with anything saved here (output or record)."""
        if not self.dir.is_dir():
            return set()
        return {p.stem for p in self.dir.iterdir() if p.suffix in ('.out', '.json')}

    def read_record(self, run_id: str) -> dict:
        """The run's record; {} when it is missing or of no record's shape (see RUN_RECORD)."""
        record = read_record(self.record(run_id), RUN_RECORD) or {}
        return record if 'exit_code' in record or 'variants' in record else {}

    def write_record(self, run_id: str, record: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record(run_id).write_text(json.dumps(record, indent=1, default=str))


def _one_name(text: str) -> bool:
    """Whether ``text`` names a file in its folder, never another folder (no ``/``, ``\\``, ``..``)."""
    return text not in ('', '.', '..') and not any(c in text for c in '/\\\0')


class JobPaths:
    """The files of one job under ``build_dir``; a job, module or version that would put a file anywhere
    else (``..``, ``/``) is refused (pipeline.toml's checks refuse those names before, this is the last guard)."""

    def __init__(self, build_dir: Path | str, job: str, module: str = '', version: str = ''):
        for what, text in (('job name', job), ('module', module or 'm'), ('version', version or 'v')):
            if not _one_name(text):
                raise ConfigError(f'{what} {text!r} would write outside the build folder {build_dir}',
                                  hint='use letters, digits, ".", "_" and "-" only')
        self.dir = Path(build_dir) / job
        self.resources = self.dir / 'resources'
        self.payload = self.resource('job')
        self.context = self.dir / 'context'
        self.sdist = self.context / f'{module}-{version}.tar.gz'
        self.pyproject = self.dir / 'pyproject.toml.json'  # the sdist's rendered pyproject.toml, kept
        self.import_check = self.dir / 'import_check.json'  # the inputs of the last import check that passed
        self.dockerfile = self.context / 'Dockerfile'
        self.requirements = self.context / 'requirements.txt'
        self.deps = self.dir / 'deps.json'
        self.sdist_index = self.dir / 'sdist_index.marshal'  # each file's piece of the sdist (package/tree.py)
        self.code_layer = self.dir / 'code_layer.tar'  # the code layer, or the base of two (image/compose.py)
        self.code_delta = self.dir / 'code_delta.tar'  # the files changed since that base, above it
        self.code_base = self.dir / 'code_base.marshal'  # what the base layer holds
        self.image_config = self.dir / 'image_config.json'
        self.image = self.dir / 'image.json'
        self.push = self.dir / 'push.json'
        self.ssh_sent = self.dir / 'ssh_sent.json'
        self.lock = self.dir / '.lock'
        self.runs_root = self.dir / 'runs'

    def resource(self, name: str) -> Path:
        return self.resources / f'{name}.pkl'

    def runs(self, where: str) -> RunPaths:
        return RunPaths(self.runs_root / where)

    @classmethod
    def of(cls, config, job: str) -> 'JobPaths':
        j = config.job(job)
        return cls(config.build_dir, j.name, j.module, j.version)


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (hex), read in pieces of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def file_states(paths, known: dict) -> dict | None:
    """{path: [size, mtime_ns, sha256]} of the files ``paths``; a hash in ``known`` (of the same form) is reused while
    the file's size and mtime are what it says there. None: one of them is missing."""
    states = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        old = known.get(path)
        if isinstance(old, (list, tuple)) and len(old) == 3 and old[0] == stat.st_size and old[1] == stat.st_mtime_ns:
            states[path] = [stat.st_size, stat.st_mtime_ns, old[2]]
        else:
            states[path] = [stat.st_size, stat.st_mtime_ns, file_sha256(path)]
    return states
