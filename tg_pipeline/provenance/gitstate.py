"""The git state of the project a run started from, through the ``git`` program: its commit, its branch, and
the uncommitted changes under the source roots (tracked files changed since the commit, and untracked files
that are not ignored and that the sdist packages: no ``__pycache__``, no hidden file) as one patch that
``git apply`` takes on that commit.

Nothing here writes to the repository: no index refresh (``GIT_OPTIONAL_LOCKS=0``), no ``git add``; an untracked
file's patch is written here, the way ``git diff`` writes a new file. A project that is no git work tree, or a
machine without git, has no git state, and that is all: no word of error.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tg_pipeline.package.sdist import packaged

EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904'  # git's empty tree: the base before the first commit
GIT_ENV = {'GIT_OPTIONAL_LOCKS': '0', 'GIT_TERMINAL_PROMPT': '0', 'LC_ALL': 'C'}


@dataclass
class GitState:
    root: str
    commit: str  # '' before the first commit
    branch: str  # '' on a detached HEAD
    patch: bytes = b''
    changed: list = field(default_factory=list)  # the files the patch changes, relative to the root

    @property
    def dirty(self) -> bool:
        return bool(self.patch)


def _git(folder, *args: str) -> bytes | None:
    """git's stdout, or None when git is missing or the command fails."""
    try:
        done = subprocess.run(['git', '-c', 'core.quotepath=off', *args], cwd=folder, capture_output=True,
                              env={**os.environ, **GIT_ENV}, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(folder: Path, source_roots: list[Path]) -> GitState | None:
    """The git state of the work tree holding ``folder`` (None: it is in none), its patch limited to the
    ``source_roots`` inside that tree."""
    top = _git(folder, 'rev-parse', '--show-toplevel')
    if not top:
        return None
    root = Path(top.decode().strip())
    commit = (_git(root, 'rev-parse', '--verify', '-q', 'HEAD^{commit}') or b'').decode().strip()
    branch = (_git(root, 'symbolic-ref', '--short', '-q', 'HEAD') or b'').decode().strip()
    state = GitState(str(root), commit, branch)
    roots = _inside(root, source_roots)
    if roots:
        tracked = _git(root, 'diff', '--binary', '--no-color', '--no-ext-diff', '--no-textconv', '--no-renames',
                       '--src-prefix=a/', '--dst-prefix=b/', commit or EMPTY_TREE, '--', *roots) or b''
        listed = _git(root, 'ls-files', '-z', '--others', '--exclude-standard', '--', *roots) or b''
        untracked = [n for n in listed.decode('utf-8', 'surrogateescape').split('\0') if n and packaged(n)]
        state.patch = tracked + b''.join(new_file_patch(root, name) for name in sorted(untracked))
        state.changed = changed_files(state.patch)
    return state


def _inside(root: Path, source_roots: list[Path]) -> list[str]:
    found = []
    for source in source_roots:
        try:
            found.append(Path(source).resolve().relative_to(root.resolve()).as_posix() or '.')
        except ValueError:  # a source root outside this work tree: its files are in the sdist all the same
            continue
    return found


def new_file_patch(root: Path, name: str) -> bytes:
    """The patch that adds the untracked file ``name`` (relative to ``root``), as ``git diff`` writes one."""
    path = Path(root, name)
    if path.is_symlink() or not path.is_file():
        return b''
    data = path.read_bytes()
    mode = '100755' if os.access(path, os.X_OK) else '100644'
    head = f'diff --git a/{name} b/{name}\nnew file mode {mode}\n'.encode()
    if not data:
        return head
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        text = None
    if text is None or '\0' in text:
        return head + f'Binary files /dev/null and b/{name} differ\n'.encode()
    lines = text.splitlines(keepends=True)
    count = '1' if len(lines) == 1 else f'1,{len(lines)}'
    body = ''.join('+' + line for line in lines)
    if not text.endswith('\n'):
        body += '\n\\ No newline at end of file\n'
    return head + f'--- /dev/null\n+++ b/{name}\n@@ -0,0 +{count} @@\n'.encode() + body.encode()


def changed_files(patch: bytes) -> list[str]:
    """The files a patch changes, in its order."""
    found = []
    for line in patch.splitlines():
        if line.startswith(b'diff --git a/'):
            name = line[len(b'diff --git a/'):].rpartition(b' b/')[0].decode('utf-8', 'replace')
            found.append(name)
    return found
