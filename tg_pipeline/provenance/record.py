"""A run's record of what ran, kept beside its result: ``build/JOB/runs/WHERE/what-ran/RUN_ID.json``.

Written when the run starts (so a detached run, or one interrupted, has it too), and given its end by the
process that sees it end. It holds the run's identity, the keys of what it ran in the store (sdist, payload
hashes, configuration, patch, notebook cells, dependency set), the git state, the image, the host, the Python and
tg_pipeline versions, the command line, owner, start and end; a re-run names the run it repeats. A kept run's
record (``RUN_ID.json``, written when it is collected) says how it ended; :func:`ending` reads both.
"""
from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path

from tg_pipeline.paths import read_json
from tg_pipeline.provenance.store import Store

FOLDER = 'what-ran'
FORMAT = 1


def path_of(run_dir: Path, run_id: str) -> Path:
    """Where the record of run ``run_id`` goes, ``run_dir`` being the folder of the job's runs on one kind of host
    (``build/JOB/runs/WHERE``)."""
    return Path(run_dir) / FOLDER / f'{run_id}.json'


def now(precise: bool = False) -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec='milliseconds' if precise else 'seconds')


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}')
    temporary.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + '\n')
    os.replace(temporary, path)


def read(path: Path) -> dict | None:
    found = read_json(path)
    return found if isinstance(found, dict) and found.get('run_id') else None


def every(build_dir: Path, where: str | None = None) -> list[tuple[Path, dict]]:
    """(path, record) of every run kept under ``build_dir`` (of one kind of host: ``where``), oldest first."""
    found = []
    for path in Path(build_dir).glob(f'*/runs/{where or "*"}/{FOLDER}/*.json'):
        record = read(path)
        if record is not None:
            found.append((path, record))
    return sorted(found, key=lambda item: item[1]['run_id'])


def find(build_dir: Path, run_id: str) -> tuple[Path, dict] | None:
    for path in sorted(Path(build_dir).glob(f'*/runs/*/{FOLDER}/{run_id}.json')):
        record = read(path)
        if record is not None:
            return path, record
    return None


def references(record: dict) -> set[tuple[str, str]]:
    """The store's objects a record needs."""
    code, git = record.get('code') or {}, record.get('git') or {}
    wanted = {('sdist', code.get('sdist')), ('cells', code.get('cells')), ('patch', git.get('patch')),
              ('config', record.get('config')), ('deps', (record.get('dependencies') or {}).get('key'))}
    return {(kind, key) for kind, key in wanted if key}


def kept_bytes(store: Store, record: dict) -> dict:
    """kind -> bytes of the objects a record references (what keeping that run costs, shared or not)."""
    return {kind: store.size(kind, key) for kind, key in sorted(references(record))}


def put_objects(store: Store, sdist: Path | None, texts: dict[str, bytes]) -> dict[str, str]:
    """Keep the sdist (a file) and the other objects (kind -> bytes; empty ones are not kept); kind -> key."""
    keys = {'sdist': store.put_file('sdist', sdist)} if sdist is not None else {}
    for kind, data in texts.items():
        if data:
            keys[kind] = store.put(kind, data)
    return keys


def ending(path: Path, record: dict) -> dict:
    """How the run ended: its record's ``ended`` (written by the process that saw the end), else what its kept
    run record says (``RUN_ID.json`` beside the ``what-ran`` folder, written when it was collected); {} while
    neither knows."""
    ended = dict(record.get('ended') or {})
    kept = read_json(path.parent.parent / f'{record["run_id"]}.json')
    if isinstance(kept, dict):
        ended.setdefault('exit_code', kept.get('exit_code'))
        for key in ('oom_killed', 'timed_out', 'signal', 'variants', 'finished', 'started_at'):
            if kept.get(key) is not None:
                ended.setdefault(key, kept[key])
    return ended
