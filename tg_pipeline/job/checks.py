"""Checks between packaging and building, so bad input stops before an image is built.

* :func:`check_imports`: load the payload in a clean subprocess where every
  module that is installed here but not declared as a dependency (nor the
  standard library, nor a source root) refuses to import, and so does every
  module of the project folder outside the source roots (``helpers.py`` or
  ``lib/`` next to ``jobs/``), which the sdist does not carry. A job that would
  die in the image with ``ModuleNotFoundError`` fails here, naming the module,
  its file and the line to add to pipeline.toml.
* :func:`check_python_version`: code pickled by value (``__main__``, notebook
  cells) only loads on the Python minor version that pickled it; the base
  image's Python is compared with this one (asked once per image id, cached).
"""
from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

from tg_pipeline.errors import PackagingError
from tg_pipeline.config.requirements import requirement_name  # noqa: F401 (public here too)

# Runs in the subprocess: argv = [roots (JSON), declared requirement names (JSON), project folders (JSON),
# payload paths...]. The current folder is not on sys.path (the container's is not the project's); a module
# found in a project folder (a root's parent, the project root) that is no source root is refused.
# Only an import that is neither the standard library nor a source root (nor cloudpickle, which every
# payload's unpickling imports) costs a look at the installed distributions (once): a job that imports only
# those starts and ends in the time Python takes to start.
# packaging parses the requirements (helpers below), imported only then, with the guard out of the way; it leaves
# sys.modules again, so that the job's own ``import packaging`` is judged like any other import. The guard is a
# plain meta path finder: importlib.abc would cost every check about 10 ms.
_GUARD = r'''
import importlib, importlib.machinery, json, pickle, sys
HELPERS
roots, declared, project = set(json.loads(sys.argv[1])), json.loads(sys.argv[2]), json.loads(sys.argv[3])
stdlib = stdlib_names()
rules = []
def first_rules(guard):
    global Requirement, canonicalize_name
    sys.meta_path.remove(guard)
    try:
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name
        for loaded in [m for m in sys.modules if m.partition('.')[0] == 'packaging']:
            del sys.modules[loaded]
        return import_rules(declared)
    finally:
        sys.meta_path.insert(0, guard)
class Guard:
    def find_spec(self, name, path=None, target=None):
        top = name.partition('.')[0]
        if top in stdlib or top in roots or top in sys.modules:
            return None
        here = importlib.machinery.PathFinder.find_spec(top, project)
        if here is not None and here.origin and here.origin != 'namespace':
            raise ModuleNotFoundError('TG_PIPELINE_OUTSIDE ' + top + ' ' + here.origin, name=top)
        if top == 'cloudpickle':  # every image has it (a dependency of its own): no need to read the rules
            return None
        if not rules:
            rules.append(first_rules(self))
        allowed, installed = rules[0]
        if top in installed and top not in allowed:
            raise ModuleNotFoundError('TG_PIPELINE_UNDECLARED ' + top, name=top)
sys.meta_path.insert(0, Guard())
for path in sys.argv[4:]:
    with open(path, 'rb') as file:
        loaded = pickle.load(file)
    for one in [v for _, v in loaded] if isinstance(loaded, list) else [loaded]:
        if isinstance(one, dict) and one.get('tg_pipeline_job'):  # a job's reference: its factory's module loads
            importlib.import_module(one['factory'].partition(':')[0])
'''


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need, transitively, as far as they are installed here."""
    from importlib import metadata
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if 'extra ==' in requirement or 'extra==' in requirement:
                continue
            try:
                todo.append(requirement_name(requirement))
            except ValueError:  # a malformed Requires-Dist of some installed distribution: not ours to judge
                continue
    return seen


def stdlib_names() -> set[str]:
    """The top-level names of the standard library: ``sys.stdlib_module_names`` (Python 3.10 on) and the modules
    built in; on 3.9, :func:`stdlib_folder_names`."""
    import sys
    if sys.version_info >= (3, 10):
        return set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    return stdlib_folder_names()


def stdlib_folder_names() -> set[str]:
    """The top-level names of the standard library as its folders hold them (the library and lib-dynload: a module,
    an extension module, a package), and the modules built in."""
    import os
    import sys
    import sysconfig
    found = set(sys.builtin_module_names)
    library = sysconfig.get_paths()['stdlib']
    for folder in (library, os.path.join(library, 'lib-dynload')):
        for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            name, _, suffix = entry.partition('.')
            package = os.path.isfile(os.path.join(folder, entry, '__init__.py'))
            if suffix == 'py' or suffix.endswith(('so', 'pyd')) or package:
                found.add(name)
    return found


def module_distributions() -> dict[str, list[str]]:
    """Top-level module name -> the names of the installed distributions that provide it: importlib.metadata's
    ``packages_distributions`` (Python 3.10 on); on 3.9, :func:`read_module_distributions`."""
    import sys
    from importlib import metadata
    if sys.version_info >= (3, 10):
        return dict(metadata.packages_distributions())
    return read_module_distributions()


def read_module_distributions() -> dict[str, list[str]]:
    """``packages_distributions`` of Python 3.10 and 3.11, for 3.9: each distribution's top_level.txt, else the
    top-level names of its .py files."""
    from importlib import metadata
    found: dict[str, list[str]] = {}
    for dist in metadata.distributions():
        tops = (dist.read_text('top_level.txt') or '').split() or {
            f.parts[0] if len(f.parts) > 1 else f.with_suffix('').name for f in dist.files or [] if f.suffix == '.py'}
        for top in tops:
            found.setdefault(top, []).append(dist.metadata['Name'])
    return found


def import_rules(dependencies: list[str]) -> tuple[set[str], dict[str, list[str]]]:
    """(top-level names the declared dependencies provide, installed top-level name -> distributions)."""
    installed = {top: sorted({canonicalize_name(d) for d in dists}) for top, dists in module_distributions().items()}
    declared = _closure({requirement_name(d) for d in dependencies} | {'cloudpickle'})
    return {top for top, dists in installed.items() if set(dists) & declared}, installed


def check_imports(job: str, payloads: list[Path], dependencies: list[str], source_roots: list[Path],
                  project_root: Path | None = None, roots_setting: str = 'source_roots in [package] of pipeline.toml'
                  ) -> None:
    """Raise :class:`PackagingError` when loading the job needs an installed but undeclared package, or a module
    of the project folder (``project_root``, the roots' parents) outside the source roots."""
    start_import_check(job, payloads, dependencies, source_roots, project_root, roots_setting).finish()


class ImportCheck:
    """The check's subprocess, started: the caller does other work (the sdist) and then calls :meth:`finish`.
    Without a ``command``, the same inputs passed before (see :func:`import_check_key`): nothing runs."""

    def __init__(self, job: str, command: list[str] | None, source_roots: list[Path], dependencies: list[str],
                 project_root: Path | None, roots_setting: str, record: Path | None = None, key: str = ''):
        self.job, self.source_roots, self.dependencies = job, source_roots, dependencies
        self.project_root, self.roots_setting, self.record, self.key = project_root, roots_setting, record, key
        self.process = None if command is None else \
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(self) -> None:
        """Wait for the subprocess; raise what it found."""
        if self.process is None:
            return
        _, stderr = self.process.communicate()
        if self.process.returncode == 0:
            if self.record is not None:
                from tg_pipeline.paths import write_if_changed
                write_if_changed(self.record, json.dumps({'key': self.key}).encode())
            return
        job, source_roots = self.job, self.source_roots
        outside = re.search(r'TG_PIPELINE_OUTSIDE (\S+) (.+)$', stderr, re.MULTILINE)
        if outside:
            raise outside_roots(job, outside.group(1), Path(outside.group(2)), source_roots,
                                _importer(stderr, source_roots), self.project_root, self.roots_setting)
        found = re.search(r'TG_PIPELINE_UNDECLARED (\S+)', stderr)
        if not found:
            raise PackagingError(f'the payload of job {job} does not load in a fresh Python process:\n'
                                 + _last_lines(stderr),
                                 hint='it must load without the state of this session; see the error above')
        raise _undeclared(job, found.group(1), self.dependencies, _importer(stderr, source_roots))

    def cancel(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def start_import_check(job: str, payloads: list[Path], dependencies: list[str], source_roots: list[Path],
                       project_root: Path | None = None,
                       roots_setting: str = 'source_roots in [package] of pipeline.toml',
                       record: Path | None = None, names: set[str] | None = None) -> ImportCheck:
    """:func:`check_imports`, started in the background; with a ``record`` of a check that passed with the same
    :func:`import_check_key`, not started at all (the record is written when it passes); ``names``: the modules the
    roots' import statements name, when known."""
    parents = list(dict.fromkeys(str(root.resolve().parent) for root in source_roots))
    project = list(dict.fromkeys(parents + ([str(Path(project_root).resolve())] if project_root else [])))
    key = ''
    if record is not None:
        from tg_pipeline.paths import read_record
        key = import_check_key(payloads, dependencies, source_roots, project, names)
        if (read_record(record, {'key': str}) or {}).get('key') == key:
            return ImportCheck(job, None, source_roots, list(dependencies), project_root, roots_setting)
    helpers = ''.join(inspect.getsource(f) for f in (requirement_name, _closure, stdlib_names, stdlib_folder_names,
                                                       module_distributions, read_module_distributions, import_rules))
    script = f'import sys; sys.path[:] = {parents!r} + [p for p in sys.path if p]\n' + _GUARD.replace('HELPERS', helpers)
    command = [sys.executable, '-c', script, json.dumps(sorted(root.name for root in source_roots)),
               json.dumps(list(dependencies)), json.dumps(project), *map(str, payloads)]
    return ImportCheck(job, command, source_roots, list(dependencies), project_root, roots_setting, record, key)


def _importable(folder: str) -> list[str]:
    """What in ``folder`` an import could find: modules and folders (not a record, a log, an editor's swap file)."""
    import os
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.endswith(('.py', '.pyc', '.so', '.pyd')) or e.is_dir())


from tg_pipeline.package.tree import imported_names  # noqa: E402,F401 (part of this module's interface)


def import_check_key(payloads: list[Path], dependencies: list[str], source_roots: list[Path],
                     project: list[str], names: set[str] | None = None) -> str:
    """What the check's outcome depends on: the declared dependencies, the roots, the modules the roots' sources
    import (not the rest of their code), the installed modules and project modules the payloads name (their
    objects' classes, the modules their code refers to; not their bytes, which every code edit of a root
    changes), what the project folders hold, and the installed packages (this Python, its path entries' change
    times). A job that imports torch is then loaded in a fresh Python once, not at every code edit."""
    import hashlib
    import os
    from tg_pipeline.package.sdist import source_files
    if names is None:  # (the sdist's scan knows them without reading unchanged files again)
        names = set()
        for file in source_files(source_roots):
            if file.suffix == '.py':
                names |= imported_names(file.read_bytes())
    folders = [entry for entry in sys.path if entry and os.path.isdir(entry)]
    listed = {folder: _importable(folder) for folder in dict.fromkeys([*project, *folders]) if os.path.isdir(folder)}
    roots = {Path(r).name for r in source_roots}
    candidates = {_module_name(name) for found in listed.values() for name in found} - roots
    named = set().union(*(payload_modules(Path(path).read_bytes(), candidates) for path in payloads))
    named |= _references(payloads)
    parts = [sys.executable, sys.version, json.dumps(sorted(dependencies)), json.dumps(sorted(names)),
             json.dumps(sorted(named)), *(str(Path(root).resolve()) for root in source_roots)]
    parts += [f'{folder}:{listed[folder]}' for folder in project if folder in listed]
    parts += [f'{folder}:{os.stat(folder).st_mtime_ns}' for folder in folders]
    return hashlib.sha256(b'\0'.join(part.encode() for part in parts)).hexdigest()


def _references(payloads: list[Path]) -> set[str]:
    """The hashes of the payloads that are a job's reference (factory, arguments): they change with pipeline.toml
    only, never with a code edit, and the check imports the factory's module they name."""
    import hashlib
    from tg_pipeline.job.reference import is_reference
    found = set()
    for path in payloads:
        data = Path(path).read_bytes()
        if is_reference(data):
            found.add('reference:' + hashlib.sha256(data).hexdigest())
    return found


def payload_modules(data: bytes, candidates: set[str]) -> set[str]:
    """The ``candidates`` (top-level module names) a pickle names: in its global references (``module name``)
    and in its strings (cloudpickle's imports of the modules pickled code uses)."""
    import pickletools
    found: set[str] = set()
    try:
        for _, arg, _ in pickletools.genops(data):
            if isinstance(arg, str) and len(arg) < 256:
                found.update(top for top in (w.split('.')[0] for w in arg.split()) if top in candidates)
    except Exception:  # noqa: BLE001 - not a pickle we can read: its bytes decide
        import hashlib
        found.add(hashlib.sha256(data).hexdigest())
    return found


def _module_name(entry: str) -> str:
    """``numpy`` for ``numpy``, ``numpy.py``, ``_cffi_backend.cpython-311-x86_64-linux-gnu.so``."""
    return entry.split('.')[0]


def _undeclared(job: str, top: str, dependencies: list[str], where: str) -> PackagingError:
    from importlib import metadata
    dists = import_rules(dependencies)[1].get(top, [top])
    pins = []
    for dist in dists:
        try:
            pins.append(f'"{dist}=={metadata.version(dist)}"')
        except metadata.PackageNotFoundError:
            pins.append(f'"{dist}"')
    return PackagingError(
        f'job {job} imports {top!r}{where}, which is installed here ({", ".join(dists)}) but not declared '
        f'as a dependency, so the image would not have it',
        hint=f'add {" or ".join(pins)} to dependencies in [package] (or [jobs.{job}]) of pipeline.toml')


def outside_roots(job: str, top: str, origin: Path, source_roots: list[Path], where: str,
                  project_root: Path | None, roots_setting: str) -> PackagingError:
    """A module of the project folder that is no source root: its file, and the roots that would carry it."""
    package = origin.name == '__init__.py'
    folder = origin.parent if package else origin.parent / top
    base = Path(project_root).resolve() if project_root else folder.parent

    def shown(path: Path) -> str:
        try:
            return path.resolve().relative_to(base).as_posix()
        except ValueError:
            return str(path.resolve())
    roots = [shown(root) for root in source_roots]
    listed = ", ".join(json.dumps(r) for r in [*roots, shown(folder)])
    fix = f'packaging.source_roots = [{listed}]' if roots_setting.startswith('packaging.') else \
        f'source_roots = [{listed}]'
    if package:
        hint = f'add its folder to {roots_setting}: {fix}'
    else:  # a source root is a folder: the module needs one of its own (or a place in an existing root)
        hint = (f'move {origin.name} into a folder of its own, {shown(folder)}/__init__.py, and add that folder to '
                f'{roots_setting}: {fix} (or move it into a source root and import it from there)')
    return PackagingError(
        f'job {job} imports {top!r}{where} from {origin}, which is in the project folder but outside the source '
        f'roots ({", ".join(roots)}): the image would not have it', hint=hint)


def _importer(stderr: str, source_roots: list[Path]) -> str:
    """`` (from FILE:LINE)``: the last frame of the traceback inside a source root, if any."""
    roots = [str(root.resolve()) for root in source_roots]
    frames = re.findall(r'File "([^"]+)", line (\d+)', stderr)
    inside = [f'{path}:{line}' for path, line in frames if any(path.startswith(r) for r in roots)]
    return f' (in {inside[-1]})' if inside else ''


def _last_lines(text: str, count: int = 8) -> str:
    return '\n'.join('  ' + line for line in text.strip().splitlines()[-count:])


def pickled_by_value(data: bytes) -> bool:
    """Whether a cloudpickle payload holds code by value (it then calls cloudpickle's rebuilders)."""
    return b'cloudpickle' in data


def base_python_version(client, base_image: str, cache_file: Path) -> str | None:
    """``"X.Y"`` of the base image's ``python``: its PYTHON_VERSION env (official images), else asked
    once by running it; cached per image id in ``cache_file``. None when the image is not here."""
    import docker
    try:
        image = client.images.get(base_image)
    except docker.errors.ImageNotFound:
        return None  # the build pulls it, or says it cannot
    from tg_pipeline.paths import read_json
    cache = read_json(cache_file)
    if not isinstance(cache, dict) or not all(isinstance(v, str) for v in cache.values()):
        cache = {}  # missing, or of another shape: only a cache
    if image.id in cache:
        return cache[image.id]
    env = dict(e.split('=', 1) for e in image.attrs.get('Config', {}).get('Env') or [] if '=' in e)
    version = env.get('PYTHON_VERSION')
    if version:
        version = '.'.join(version.split('.')[:2])
    else:
        try:
            output = client.containers.run(image.id, ['python', '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
                                           remove=True, stdout=True, stderr=True)
            version = output.decode().strip()
        except docker.errors.DockerException:
            return None
    cache[image.id] = version
    Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
    Path(cache_file).write_text(json.dumps(cache, indent=1))
    return version


def check_python_version(job: str, payloads: list[bytes], base_image: str, client, cache_file: Path) -> None:
    """Raise when code pickled by value would meet another Python minor version in the image."""
    if not any(pickled_by_value(data) for data in payloads):
        return
    here = '%d.%d' % sys.version_info[:2]
    there = base_python_version(client, base_image, cache_file)
    if there is None or there == here:
        return
    raise PackagingError(
        f'job {job} holds code pickled by value (defined in __main__, a notebook, or a by-value module), which '
        f'loads only on the Python that pickled it: this is Python {here}, base image {base_image} has Python {there}',
        hint=f'use a base image with Python {here} (e.g. python:{here}-slim, in [docker] base_image or '
             f'TG_PIPELINE_BASE_IMAGE), or run tg_pipeline under Python {there}, or move the job\'s class into '
             f'a source root so it is pickled by reference')
