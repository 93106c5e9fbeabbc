"""Step 1: turn a job into payload bytes (cloudpickle).

Classes and functions from ``__main__`` (scripts, notebooks) are pickled by
value by cloudpickle. Everything else is pickled by reference, so its module
must travel in the package (under a source root) or be installed in the image
(site-packages, standard library). Anything else is refused here, before any
image is built.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import sys
import sysconfig
import types
from pathlib import Path

import cloudpickle

from tg_pipeline.errors import ConfigError, PackagingError
from tg_pipeline.paths import write_if_changed

PROTOCOL = 4  # readable by every Python >= 3.4: the container may differ in patch version
# Our own self-contained modules that travel by value, so images need no tg_pipeline
BY_VALUE = ('tg_pipeline.delivery.example_job',)


class _RecordingPickler(cloudpickle.Pickler):
    """cloudpickle's pickler that also notes the modules of what it pickles by reference."""

    def __init__(self, file):
        super().__init__(file, protocol=PROTOCOL)
        self.modules: dict[str, str] = {}

    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            module = getattr(obj, '__module__', None)
            if isinstance(module, str):
                self.modules.setdefault(module, getattr(obj, '__qualname__', repr(obj)))
        return super().reducer_override(obj)


def _register_by_value():
    for name in BY_VALUE:
        module = importlib.import_module(name)
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:
            pass  # already registered


def dumps(obj) -> tuple[bytes, dict[str, str]]:
    """Pickle ``obj``; also return {module: an object's name} for what went by reference."""
    _register_by_value()
    buffer = io.BytesIO()
    pickler = _RecordingPickler(buffer)
    try:
        pickler.dump(obj)
    except Exception as e:
        found = unpicklable_path(obj)
        what = f'{found[0]} is a {type(found[1]).__module__}.{type(found[1]).__qualname__}' if found else 'it'
        raise PackagingError(
            f'the job cannot be pickled: {what} ({type(e).__name__}: {e})',
            hint='keep only plain data in the job\'s attributes: create open files, locks, connections and '
                 'clients inside run() (or in __setstate__)') from e
    return buffer.getvalue(), pickler.modules


def _children(obj):
    if isinstance(obj, dict):
        return [(f'[{k!r}]', v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f'[{i}]', v) for i, v in enumerate(obj)]
    attributes = dict(getattr(obj, '__dict__', None) or {})
    for slot in getattr(type(obj), '__slots__', ()):
        if hasattr(obj, slot):
            attributes[slot] = getattr(obj, slot)
    return [(f'.{k}', v) for k, v in attributes.items()]


def unpicklable_path(obj, path: str = 'job', depth: int = 0, seen=None):
    """(path, object) of the deepest attribute/item that cannot be pickled, e.g. ``job.db.lock``."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 20:
        return None
    seen.add(id(obj))
    for suffix, child in _children(obj):
        try:
            cloudpickle.dumps(child, protocol=PROTOCOL)
        except Exception:
            return unpicklable_path(child, path + suffix, depth + 1, seen) or (path + suffix, child)
    return None


def _installed_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ('stdlib', 'platstdlib', 'purelib', 'platlib') if k in paths}
    dirs.update(p for p in sys.path if 'site-packages' in p or 'dist-packages' in p)
    return [Path(d).resolve() for d in dirs if d]


def _under(path: Path, roots) -> bool:
    return any(path == r or r in path.parents for r in roots)


def check_modules(modules: dict[str, str], source_roots: list[Path]) -> None:
    """Refuse modules that neither travel in the package nor are installed in the image."""
    roots = [Path(r).resolve() for r in source_roots]
    installed = _installed_dirs()
    for name, example in sorted(modules.items()):
        top = name.split('.')[0]
        if name == '__main__' or name in BY_VALUE or top in sys.builtin_module_names or top in getattr(sys, 'stdlib_module_names', ()):
            continue
        module = sys.modules.get(name)
        file = getattr(module, '__file__', None)
        if not file:
            continue  # namespace or built-in module
        file = Path(file).resolve()
        if _under(file, roots) or _under(file, installed):
            continue
        raise PackagingError(
            f'the job uses {example} from module {name!r} ({file}), which is neither under the source roots '
            f'({", ".join(str(r) for r in roots)}) nor installed: it would be missing in the container',
            hint=_outside_hint(name, file))


def _outside_hint(name: str, file: Path) -> str:
    """How module ``name`` (at ``file``) travels: its top-level package's folder as a source root; a lone
    module first needs a folder of its own (a source root is a folder)."""
    depth = len(name.split('.')) - (1 if file.name == '__init__.py' else 2)
    if depth < 0:
        return (f'move {file.name} into a folder of its own ({file.parent / name}/__init__.py) and add its folder '
                f'to source_roots in [package] of pipeline.toml, or install it as a dependency')
    return (f'add its folder {file.parents[depth]} to source_roots in [package] of pipeline.toml, or install it '
            f'as a dependency')


def check_source_roots(source_roots: list[Path], config_file: str | None = None) -> None:
    for root in source_roots:
        if not Path(root).is_dir():
            raise ConfigError(f'source root {root} is not a folder', file=config_file, key='package.source_roots',
                              hint='list folders that hold your job code, relative to pipeline.toml')
        if not Path(root).name.isidentifier():
            raise ConfigError(f'source root {Path(root).name!r} is not a valid Python package name',
                              file=config_file, key='package.source_roots')


def serialize(job, path: Path, source_roots: list[Path]) -> str:
    """Pickle ``job`` into ``path``; return the payload's sha256."""
    data, modules = dumps(job)
    check_modules(modules, source_roots)
    write_if_changed(path, data)
    return hashlib.sha256(data).hexdigest()


def detect_source_roots(modules: dict[str, str]) -> list[Path]:
    """The folders of the top-level packages that the payload's by-reference code comes from."""
    installed = _installed_dirs()
    roots = []
    for name in sorted(modules):
        top = name.split('.')[0]
        if name == '__main__' or name in BY_VALUE or top in sys.builtin_module_names \
                or top in getattr(sys, 'stdlib_module_names', ()):
            continue
        module = sys.modules.get(top)
        file = getattr(module, '__file__', None)
        if not file or _under(Path(file).resolve(), installed):
            continue
        if not file.endswith('__init__.py'):
            raise PackagingError(
                f'the job uses {modules[name]} from module {name!r} ({file}), a single file outside any package: '
                f'it cannot travel as a source root',
                hint=f'move it into a package folder (with __init__.py) and set packaging.source_roots to that folder')
        root = Path(file).resolve().parent
        if root not in roots:
            roots.append(root)
    return roots
