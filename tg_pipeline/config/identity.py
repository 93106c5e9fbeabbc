"""Who and what a run belongs to: the owner (``user@machine``), the project id, the unique module name
``name__version``, and the default base image for this Python."""
from __future__ import annotations
import getpass
import hashlib
import os
import re
import socket
import sys
from pathlib import Path
from tg_pipeline.config.text import LineIndex  # noqa: F401 (part of this module's interface)


def owner() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name known (e.g. a uid without passwd entry in a container)
        user = str(os.getuid()) if hasattr(os, 'getuid') else 'unknown'
    return f'{user}@{socket.gethostname()}'


def slug(text: str) -> str:
    """Lowercase, only ``[a-z0-9_.-]``, at most 40 characters."""
    return re.sub(r'[^a-z0-9_.-]+', '-', text.lower()).strip('-.')[:40].strip('-.') or 'project'


def project_id(name: str, root: Path, owner: str) -> str:
    """``slug(name or root's folder name)-HASH8``: the same for one owner's project, whatever runs it.

    HASH8 hashes ``owner:name`` when the project is named, else ``owner:<absolute root>``.
    """
    key = f'{owner}:{name if name else str(Path(root).resolve())}'
    return f'{slug(name or Path(root).resolve().name)}-{hashlib.sha256(key.encode()).hexdigest()[:8]}'


def default_base_image() -> str:
    return 'python:%d.%d-slim' % sys.version_info[:2]


def module_name(package: str, version: str) -> str:
    """The unique importable module name: ``name__version`` with separators as ``_``."""
    return re.sub(r'[^0-9a-zA-Z_]', '_', f'{package}__{version}').lower()
