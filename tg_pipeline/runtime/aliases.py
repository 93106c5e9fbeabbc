"""The source roots importable by their own names in the job package (standard library only): ``jobs.x`` is the
same module object as ``MODULE.jobs.x``, so absolute, relative and ``from jobs import x`` imports all work, and
pickles that name either form load.

In a job package the source roots live under the package's unique module (``MODULE.jobs``), so that
versions never clash. Code written as ``from jobs.util import shout`` (or ``import jobs.util``, or
``from jobs import util``) still works: :class:`RootAliases`, first on ``sys.meta_path``, loads
``jobs[.x]`` as ``MODULE.jobs[.x]`` and registers the same module object under both names; pickles
naming either form load too.

A name has one owner per process: :func:`install_aliases` makes a root's name an alias only when nothing
else in the process has it (no module of that name is loaded, none is importable from sys.path, no job
package loaded first has claimed it). In a container there is one job package and nothing else, so
every root is aliased. In one process with two versions (``install_package_and_get_loader``), the first
loaded keeps the names; the second works through relative imports, and when its source files import a
root by its absolute name, loading it raises ImportError naming the file, the line and the name's owner,
instead of silently running the other version's (or your local project's) modules.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys


class RootAliases:
    """``ROOT`` and ``ROOT.x`` (for each root in ``roots``) are ``MODULE.ROOT[.x]``: the same module objects.

    A meta path finder and its loader (find_spec, create_module, exec_module), without the ``importlib.abc``
    base classes: importing those costs a container's start about 10 ms (importlib.resources with them)."""

    def __init__(self, module: str, roots):
        self.module, self.roots = module, frozenset(roots)

    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] not in self.roots:
            return None
        try:
            real = importlib.util.find_spec(f'{self.module}.{name}')
        except ImportError:
            real = None
        if real is None:
            return None  # no such module in the package: the import fails as it would anywhere
        # a loader of PEP 451 (create_module, exec_module): typeshed's LoaderProtocol asks for load_module too
        return importlib.util.spec_from_loader(name, self)  # type: ignore[arg-type]

    def create_module(self, spec):
        real = importlib.import_module(f'{self.module}.{spec.name}')
        spec.loader_state = real.__spec__
        return real

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state  # the import system set ours: the module keeps its own

    def __repr__(self):
        return f'RootAliases({self.module!r}, {sorted(self.roots)!r})'


def owner(root: str) -> str | None:
    """What has the name ``root`` in this process (another job package's aliases, a loaded or importable
    module), or None when it is free."""
    for finder in _aliases():
        if root in finder.roots:
            return f'the job package {finder.module} (loaded first)'
    if root in sys.modules:
        return f'the module {getattr(sys.modules[root], "__file__", None) or root} (already loaded)'
    spec = importlib.machinery.PathFinder.find_spec(root, [p or os.getcwd() for p in sys.path])
    if spec is not None and spec.origin and spec.origin != 'namespace':  # a folder without __init__.py is none
        return f'{spec.origin} (on sys.path)'
    return None


def _aliases() -> list:
    """The RootAliases of every job package in this process (each package has its own copy of this class)."""
    return [f for f in sys.meta_path if type(f).__name__ == 'RootAliases' and isinstance(getattr(f, 'roots', None),
                                                                                      frozenset)]


def absolute_import(folder: str, names) -> tuple[str, int, str] | None:
    """(file, line, imported name) of the first import statement under ``folder`` that imports one of
    ``names`` (top-level names) by its absolute name, or None."""
    import ast  # only here: a container (one job package) never needs it, and starts without it
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for file in sorted(f for f in files if f.endswith('.py')):
            path = os.path.join(parent, file)
            try:
                with open(path, 'rb') as source:
                    tree = ast.parse(source.read(), path)
            except (OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found = [a.name for a in node.names if a.name.partition('.')[0] in names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found = [node.module] if node.module.partition('.')[0] in names else []
                else:
                    continue
                if found:
                    return path, node.lineno, found[0]
    return None


def install_aliases(module: str, roots, package_dir: str) -> None:
    """Alias the roots of the job package ``module`` (in ``package_dir``) whose names are free; raise
    ImportError when the package's code imports a root by its absolute name that something else owns."""
    if any(f.module == module for f in _aliases()):
        return
    taken = {root: owner(root) for root in roots}
    free = [root for root, who in taken.items() if who is None]
    for root, who in taken.items():
        if who is None:
            continue
        found = absolute_import(os.path.join(package_dir, root), {root})
        if found:
            path, line, name = found
            raise ImportError(
                f'{path}:{line} imports {name!r} by its absolute name, but in this process {root!r} is {who}, not '
                f'this package\'s own {module}.{root}: the import would run other code. Make it relative (e.g. '
                f'"from . import ..." or "from .x import ..."), or load {module} in a process of its own',
                name=name, path=path)
    if free:
        sys.meta_path.insert(0, RootAliases(module, free))
