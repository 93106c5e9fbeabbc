"""The source roots' content as one small file, which the build steps depend on instead of every source file.

doit checks a task's ``file_dep`` one file at a time (a stat, and an MD5 when the mtime moved), saves a state per
file after the task, and the job lock's stamps record each one again (:mod:`tg_pipeline.workflow.locks`). With
thousands of modules in the source roots that bookkeeping cost more than the build it guards. So the roots are
walked once per doit command, here, and what they hold is written to one file::

    build/.sources/ROOTS.txt        a line per packaged file: its SHA-256, two spaces, its path (sorted)
    build/.sources/ROOTS.marshal    path -> [size, mtime_ns, sha256]: a file whose stat holds is not read again

(ROOTS: a hash of the source roots' paths.) The manifest's bytes change exactly when a file is added, removed,
renamed or edited, and an identical manifest is not rewritten (:func:`tg_pipeline.paths.write_if_changed`), so a
``touch`` or a ``git checkout`` back and forth rebuilds nothing. Two doit processes that refresh it at once write
the same bytes, each by an atomic rename.
"""
from __future__ import annotations

import hashlib
import marshal
import os
from pathlib import Path

from tg_pipeline.package.sdist import source_names
from tg_pipeline.paths import file_states, write_if_changed

FOLDER = '.sources'


def manifest_path(build_dir: Path, source_roots: list[Path]) -> Path:
    """Where the manifest of these roots is kept under ``build_dir``."""
    key = hashlib.sha256('\0'.join(os.fspath(root) for root in source_roots).encode()).hexdigest()[:16]
    return Path(build_dir) / FOLDER / f'{key}.txt'


def _known(path: Path) -> dict:
    try:
        found = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def hashes(source_roots: list[Path], known: dict) -> dict[str, list]:
    """path -> [size, mtime_ns, sha256] of every packaged file of the roots, in the sdist's order; a hash is taken
    from ``known`` while the file's size and mtime are what it says (:func:`tg_pipeline.paths.file_states`)."""
    found = file_states([path for root in source_roots for path, _ in source_names(root)], known)
    if found is None:
        raise FileNotFoundError('a file of the source roots went away while they were read')
    return found


def refresh(build_dir: Path, source_roots: list[Path]) -> Path:
    """Write the manifest of ``source_roots`` (when what it says changed) and return its path."""
    path = manifest_path(build_dir, source_roots)
    cache = path.with_suffix('.marshal')
    known = _known(cache)
    found = hashes(source_roots, known)
    text = ''.join(f'{sha}  {name}\n' for name, (_, _, sha) in sorted(found.items()))
    write_if_changed(path, text.encode())
    if found != known:
        write_if_changed(cache, marshal.dumps(found))
    return path


def listed(path: str) -> list[str]:
    """The source files a manifest at ``path`` lists (for `doit graph files=1`); ``[path]`` for any other file."""
    if Path(path).parent.name != FOLDER or not path.endswith('.txt'):
        return [path]
    try:
        return [line.split('  ', 1)[1] for line in Path(path).read_text().splitlines() if '  ' in line]
    except OSError:
        return [path]
