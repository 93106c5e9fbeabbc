"""The sdist made piece by piece, so that a one-file edit in a tree of thousands of modules reads, hashes and
compresses that one file.

The sdist is a concatenation of gzip members, one per packaged file (with the folders it opens first), which gzip and
tar read as one archive (RFC 1952 allows any number of members); the same files give the same bytes whatever was
built before. ``build/JOB/sdist_index.marshal`` keeps, for each file, what the last build knew: its
size, change times and inode here, its content's sha256, the modules its import statements name, and where its piece
lies in that sdist. A source file whose stat is the same is not read again; a piece whose name, content and folders
are the same is copied from the last sdist. The code layers (:mod:`tg_pipeline.image.compose`) read the pieces of the
files that changed from the sdist by this index.
"""
from __future__ import annotations

import hashlib
import marshal
import os
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

INDEX_VERSION = 1
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE

# `import a.b as c, d` and `from a.b import x` (anywhere, also indented); relative imports stay in a root
_IMPORT_LINE = re.compile(rb'^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([^#\n;]+))',
                          re.MULTILINE)


def imported_names(source: bytes) -> set[str]:
    """The top-level modules a Python source names in its import statements."""
    found = set()
    for origin, names in _IMPORT_LINE.findall(source):
        for name in ([origin] if origin else names.split(b',')):
            words = name.strip().split()
            if words:
                found.add(words[0].split(b'.')[0].decode('ascii', 'replace'))
    return found


@dataclass
class Member:
    """One file of the sdist: its archive name, its content's sha256 and, when read now, its bytes."""
    name: str
    sha256: str
    data: bytes | None = None  # None: not read (its file did not change since the last build)
    source: str = ''  # the file here ('' for a member made in memory)
    stat: list = field(default_factory=list)  # [size, mtime_ns, ctime_ns, inode] of ``source`` when it was read
    imports: list = field(default_factory=list)  # the top-level modules its import statements name (.py)

    def content(self) -> bytes:
        if self.data is None:
            self.data = Path(self.source).read_bytes()
            self.sha256 = _sha(self.data)  # changed since the scan: the bytes that go in are the ones named
        return self.data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stat(path: str) -> list:
    found = os.stat(path)
    return [found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino]


def made(name: str, data: bytes) -> Member:
    return Member(name, _sha(data), data)


def source_member(name: str, path: str, known: dict | None = None) -> Member:
    """The member for source file ``path``, taken from ``known`` (the last index's entry) when its stat is the same."""
    stat = _stat(path)
    if known and known.get('stat') == stat and known.get('name') == name:
        return Member(name, known['sha256'], None, path, stat, known.get('imports', []))
    with open(path, 'rb') as file:
        data = file.read()
    imports = sorted(imported_names(data)) if path.endswith('.py') else []
    return Member(name, _sha(data), data, path, stat, imports)


def read_index(path: Path) -> dict:
    """The index the last sdist left (marshal: a cache of this Python's own, read in milliseconds; {} when it is
    missing, of another version, or unreadable)."""
    try:
        found = marshal.loads(Path(path).read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return found if isinstance(found, dict) and found.get('version') == INDEX_VERSION else {}


def index_bytes(index: dict) -> bytes:
    return marshal.dumps(index)


def known_sources(index: dict) -> dict:
    """source path -> the last index's entry for it."""
    return {entry['source']: entry for entry in index.get('members', []) if entry.get('source')}


# --- the pieces -----------------------------------------------------------------------------------------------
def tar_info(name: str, kind: bytes, mode: int, mtime: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, mtime, size
    info.uid = info.gid = 0
    info.uname = info.gname = ''
    return info


def header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, 'utf-8', 'surrogateescape')


def entry(info: tarfile.TarInfo, data: bytes = b'') -> bytes:
    """One tar entry as ``TarFile.addfile`` writes it: the header, the data, NULs to the block."""
    return header(info) + data + b'\0' * (-len(data) % BLOCK)


def tar_piece(dirs: list[str], name: str, data: bytes, mtime: int) -> bytes:
    return b''.join([*(entry(tar_info(d, tarfile.DIRTYPE, 0o755, mtime)) for d in dirs),
                     entry(tar_info(name, tarfile.REGTYPE, 0o644, mtime, len(data)), data)])


def gzip_member(data: bytes, level: int = 6) -> bytes:
    """A gzip member without name or time (and the OS byte 'unknown'): the same bytes on every machine."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush()
    return b'\x1f\x8b\x08\x00\0\0\0\0\0\xff' + body + struct.pack('<LL', zlib.crc32(data), len(data) & 0xFFFFFFFF)


def end_of_archive(length: int) -> bytes:
    """Two zero blocks, then zeros to a whole record, as tarfile ends an archive of ``length`` bytes."""
    return b'\0' * (2 * BLOCK + (-(length + 2 * BLOCK) % RECORD))


def assemble(members: dict[str, Member], mtime: int, previous: bytes | None = None,
             index: dict | None = None) -> tuple[bytes, list[dict]]:
    """(the sdist's bytes, its index entries): one gzip member per file, in name order, each with the folders it
    opens; a piece the last sdist (``previous``, described by ``index``) has for the same name, content and folders
    is copied from it."""
    reuse = {}
    if previous is not None and index and index.get('sha256') == _sha(previous):
        reuse = {(e['name'], e['sha256'], tuple(e['dirs'])): e for e in index.get('members', [])}
    out, entries, length = bytearray(), [], 0
    opened: set[str] = set()
    for name in sorted(members):
        member = members[name]
        folder = name.rpartition('/')[0]
        dirs = [] if folder in opened or not folder else _opened(folder, opened)
        old = reuse.get((name, member.sha256, tuple(dirs)))
        if old is not None and previous is not None:  # (reuse is empty without previous)
            piece, raw = previous[old['offset']:old['offset'] + old['length']], old['tar']
        else:
            body = tar_piece(dirs, name, member.content(), mtime)
            piece, raw = gzip_member(body), len(body)
        entries.append({'name': name, 'sha256': member.sha256, 'dirs': dirs, 'offset': len(out), 'length': len(piece),
                        'tar': raw, 'source': member.source, 'stat': member.stat, 'imports': member.imports})
        out += piece
        length += raw
    out += gzip_member(end_of_archive(length))
    return bytes(out), entries


def _opened(folder: str, opened: set) -> list[str]:
    """The folders up to ``folder`` not opened yet, outermost first (now opened)."""
    parts = folder.split('/')
    dirs = [d for d in ('/'.join(parts[:depth]) for depth in range(1, len(parts) + 1)) if d not in opened]
    opened.update(dirs)
    return dirs


def index_of(name: str, data: bytes, entries: list[dict]) -> dict:
    return {'version': INDEX_VERSION, 'sdist': name, 'sha256': _sha(data), 'members': entries}


def piece(sdist: bytes, entry_: dict) -> bytes:
    """The uncompressed tar bytes of one member's piece."""
    return zlib.decompress(sdist[entry_['offset']:entry_['offset'] + entry_['length']], 31)
