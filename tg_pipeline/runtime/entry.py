"""The job package's entry point: ``python -m MODULE`` loads the job from its resources and runs it.

Standard library only, so the container starts fast. In a job package this is
``MODULE._tg_runtime.entry`` and the package is the folder above ``_tg_runtime``; its metadata
(package, version, module, source roots) is in ``MODULE/_tg_meta.json``. The names shared with the
host (environment, run folder, files, marker lines) are in :mod:`.protocol`.

The source roots are importable by their own names too (``jobs.x`` is ``MODULE.jobs.x``): see
:func:`install_aliases`.

The job's exit status is the process's: 0 when ``run()`` returns (or the job calls ``sys.exit(0)``),
the job's own ``sys.exit(N)``, 1 for an exception, 130 for KeyboardInterrupt.
"""
from __future__ import annotations

import datetime
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import pickle
import sys
import traceback

from . import protocol


def log(message):
    print(f'{datetime.datetime.now()} INFO: {message}', flush=True)


def _own_package() -> str:
    """The job package this module was copied into: the folder above ``_tg_runtime``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the source roots by their own names ----------------------------------------------------------------
# In a job package the source roots live under the package's unique module (``MODULE.jobs``), so that
# versions never clash. Code written as ``from jobs.util import shout`` (or ``import jobs.util``, or
# ``from jobs import util``) still works: :class:`RootAliases`, first on ``sys.meta_path``, loads
# ``jobs[.x]`` as ``MODULE.jobs[.x]`` and registers the same module object under both names; pickles
# naming either form load too.
#
# A name has one owner per process: :func:`install_aliases` makes a root's name an alias only when nothing
# else in the process has it (no module of that name is loaded, none is importable from sys.path, no job
# package loaded first has claimed it). In a container there is one job package and nothing else, so
# every root is aliased. In one process with two versions (``install_package_and_get_loader``), the first
# loaded keeps the names; the second works through relative imports, and when its source files import a
# root by its absolute name, loading it raises ImportError naming the file, the line and the name's owner,
# instead of silently running the other version's (or your local project's) modules.

class RootAliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``ROOT`` and ``ROOT.x`` (for each root in ``roots``) are ``MODULE.ROOT[.x]``: the same module objects."""

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
        return importlib.util.spec_from_loader(name, self)

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
                    found = []
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


class _Unpickler(pickle.Unpickler):
    """Classes of the source roots (``jobs.x``) load from the job package (``MODULE.jobs.x``)."""

    def __init__(self, file, module: str, roots):
        super().__init__(file)
        self._module, self._roots = module, set(roots)

    def find_class(self, module, name):
        if module.split('.')[0] in self._roots:
            module = self._module + '.' + module
        return super().find_class(module, name)


class EntryPoint:
    """The payload objects of a job package (``resources/NAME.pkl``) and its metadata."""

    def __init__(self, package_dir=None):
        self.package_dir = os.path.abspath(package_dir or _own_package())
        path = os.path.join(self.package_dir, protocol.META_FILE)
        try:
            with open(path, encoding='utf-8') as file:
                meta = json.load(file)
        except FileNotFoundError:
            raise FileNotFoundError(f'{path} is missing: {self.package_dir} is no job package built by '
                                    'tg_pipeline (pass package_dir)') from None
        self.package, self.version = meta['package'], meta['version']
        self.module, self.roots = meta['module'], list(meta['roots'])
        self.resources_dir = os.path.join(self.package_dir, protocol.RESOURCES_DIR)
        self._aliased = False

    def alias_roots(self):
        """Make the source roots importable by their own names (``jobs.x`` is ``MODULE.jobs.x``), as far as
        this process lets them (see :func:`install_aliases`); ImportError when the package's code needs a name another
        package or module has."""
        if not self._aliased:
            install_aliases(self.module, self.roots, self.package_dir)
            self._aliased = True

    def resources(self) -> list:
        if not os.path.isdir(self.resources_dir):
            return []
        return sorted(f[:-4] for f in os.listdir(self.resources_dir) if f.endswith('.pkl'))

    def load_resource(self, name: str):
        self.alias_roots()
        with open(os.path.join(self.resources_dir, name + '.pkl'), 'rb') as file:
            return _Unpickler(file, self.module, self.roots).load()


def run(job):
    if hasattr(job, 'run'):
        log('Job has `run` attribute')
        return job.run()
    if callable(job):
        log('Job is callable, calling directly')
        return job()
    raise TypeError(f'{type(job)} has no run() method and is not callable')


def variant_index(environ=None):
    """The sweep variant this task runs: its swarm task slot (``ENV_SLOT``, from ``{{.Task.Slot}}``), or None.
    Replicated-job slots count from 0, and the engine renders slot 0 as the node id: not a number."""
    slot = (os.environ if environ is None else environ).get(protocol.ENV_SLOT)
    if slot is None:
        return None
    return int(slot) if slot.isdigit() else 0


def load_job(entry: EntryPoint, environ=None):
    """(variant index or None, job): the slot's variant when the package has variants, else the job."""
    index = variant_index(environ)
    if index is None or 'variants' not in entry.resources():
        return None, entry.load_resource('job')
    variants = entry.load_resource('variants')
    label, job = variants[index]
    log(f'Variant {index} of {len(variants)}: {label}')
    return index, job


class _Run:
    """The run folder (when the host gave one): what the entry point keeps there."""

    def __init__(self, environ):
        self.environ = environ
        self.dir = environ.get(protocol.ENV_RUN_DIR) or None
        self.send_back = bool(self.dir and environ.get(protocol.ENV_SEND_BACK))

    def prepare(self):
        """Make the run folder and the job's output folder; tell the job where that is (``ENV_OUTPUT``)."""
        if not self.dir:
            return
        output = self.environ.get(protocol.ENV_OUTPUT) or os.path.join(self.dir, protocol.OUTPUT_DIR)
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(output, exist_ok=True)
        self.environ[protocol.ENV_OUTPUT] = output
        os.environ[protocol.ENV_OUTPUT] = output  # the job reads the process environment

    def keep(self, name: str, data: bytes):
        if self.dir:
            with open(os.path.join(self.dir, name), 'wb') as file:
                file.write(data)

    def keep_result(self, result):
        try:
            data = pickle.dumps(result, protocol=4)
        except Exception:
            try:
                import cloudpickle  # only now: the start stays fast
                data = cloudpickle.dumps(result, protocol=4)
            except Exception as e:
                log(f'The return value could not be pickled and is not kept: {type(e).__name__}: {e}')
                return
        self.keep(protocol.RESULT_FILE, data)

    def keep_exit(self, code: int, reason: str):
        self.keep(protocol.EXIT_FILE, json.dumps({'exit_code': code, 'reason': reason}, sort_keys=True).encode())

    def send(self, index):
        """Print the run folder as marker lines (``ENV_SEND_BACK``: where it cannot be copied back)."""
        if not self.send_back:
            return
        import io
        import tarfile
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
            tar.add(self.dir, arcname='.')
        for line in protocol.marker_lines(index or 0, protocol.SEND_BACK_FILE, buffer.getvalue()):
            print(line)
        sys.stdout.flush()


def exit_status(code) -> int:
    """The exit status for ``sys.exit(code)``: Python's for None (0), 0-255, and a message (to stderr, 1).
    A number outside 0-255, which the system would wrap (256 into 0), is a failure: 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        if 0 <= code <= 255:
            return code
        print(f'exit status {code} is out of the range 0-255: exiting with 1', file=sys.stderr, flush=True)
        return 1
    print(code, file=sys.stderr, flush=True)
    return 1


def _attempt(entry_dir, environ):
    """Load and run the job: (variant index, exit status, reason, result, traceback text or None)."""
    index = None
    try:
        log('Loading job')
        index, job = load_job(EntryPoint(entry_dir), environ)
        log(f'Job of type {type(job)} is loaded')
        result = run(job)
    except SystemExit as stop:
        code = exit_status(stop.code)
        return index, code, protocol.REASON_OK if code == 0 else protocol.REASON_SYS_EXIT, None, None
    except BaseException as error:
        code = 130 if isinstance(error, KeyboardInterrupt) else 1
        return index, code, protocol.REASON_EXCEPTION, None, traceback.format_exc()
    return index, 0, protocol.REASON_OK, result, None


def main(package_dir=None, environ=None) -> int:
    """Run the package's job (its variant for this task slot); return the exit status.

    ``environ`` (default ``os.environ``) holds the settings the host gave (:mod:`.protocol` ``ENV_*``).
    With a run folder, the output folder is set as ``ENV_OUTPUT`` in it and in ``os.environ`` (the job's).
    """
    environ = os.environ if environ is None else environ
    log('Welcome to Training Grounds!')
    folder = _Run(environ)
    folder.prepare()
    index, code, reason, result, trace = _attempt(package_dir, environ)
    if code == 0:
        folder.keep_result(result)
        folder.keep_exit(code, reason)
        folder.send(index)
        log('Job has exited successfully')
    else:
        log('Job has NOT exited successfully')
        sys.stdout.flush()
        if trace is not None:
            sys.stderr.write(trace)
            sys.stderr.flush()
            folder.keep(protocol.TRACEBACK_FILE, trace.encode())
        folder.keep_exit(code, reason)
        folder.send(index)
    log('DONE. Exiting Training Grounds.')
    return code
