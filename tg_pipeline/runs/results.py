"""A run's return value: loaded from its run folder (classes of the job package as the local ones), said
as a person reads it (its repr, or its type and size when large), or why it cannot be loaded here."""
from __future__ import annotations
import pickle
from pathlib import Path
from tg_pipeline.console.units import format_bytes
from tg_pipeline.runtime import protocol
import json


class _Missing(Exception):
    """A class the pickle names that cannot be had here."""

    def __init__(self, module: str, name: str, cause: Exception):
        super().__init__(f'{module}.{name}')
        self.module, self.name, self.cause = module, name, cause


class _ResultUnpickler(pickle.Unpickler):
    """Classes of the job package (``name__version.jobs.x``) load as the local ones (``jobs.x``)."""

    def __init__(self, file, module: str):
        super().__init__(file)
        self.prefix = module + '.'

    def find_class(self, module, name):
        if self.prefix != '.' and module.startswith(self.prefix):
            try:
                return super().find_class(module[len(self.prefix):], name)
            except ImportError:
                pass
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError) as e:
            raise _Missing(module, name, e) from None


def load_result(run_dir, module: str):
    """The job's return value kept in ``run_dir``, or None; ResultNotLoadable when this Python lacks what it
    needs."""
    path = run_dir and Path(run_dir, protocol.RESULT_FILE)
    if not path or not path.exists():
        return None
    import cloudpickle  # noqa: F401  (values pickled by value need it importable)
    with open(path, 'rb') as file:
        try:
            return _ResultUnpickler(file, module).load()
        except _Missing as missing:
            raise not_loadable(path, module, missing) from None


def not_loadable(path: Path, job_module: str, missing: _Missing):
    """What a person needs to know about a return value this Python cannot load, and how to load it."""
    from tg_pipeline.errors import ResultNotLoadable
    own = job_module and missing.module.startswith(job_module + '.')
    module = missing.module[len(job_module) + 1:] if own else missing.module
    top = module.partition('.')[0]
    needs = f'{module}.{missing.name}'
    cause = f'{type(missing.cause).__name__}: {missing.cause}'
    if own:
        hint = (f'{needs} is a class of your source roots: load the value where {top!r} imports, e.g. in the '
                f'project folder')
    elif isinstance(missing.cause, ModuleNotFoundError):
        hint = f'pip install {top} (the package that provides the module {top!r}) here to load it; the image has it'
    else:
        hint = f'install here the version of {top} that the image has ({needs} differs here)'
    size = path.stat().st_size
    return ResultNotLoadable(f'holds a {needs} that cannot be loaded here ({cause}): {size} bytes in {path}',
                             path=path, size=size, module=top, needs=needs, hint=hint)


# --- return values as people read them ---------------------------------------------------------------------
SHOWN_PICKLE_BYTES = 64 * 1024  # a larger return value is summed up, never loaded to be shown


SHOWN_REPR_CHARS = 2000


def shown_value(run_dir, module: str, hints: list | None = None) -> str:
    """The return value kept in ``run_dir`` as a person reads it: its repr, or, when that would be large (a
    pickle over 64 KiB, or a repr over 2000 characters), ``<TYPE, SIZE pickled, in PATH>``; a large value
    is not even loaded (the entry point kept its type in ``result.json``). A value this Python cannot load
    is named, and how to load it goes into ``hints``."""
    from tg_pipeline.errors import ResultNotLoadable
    path = run_dir and Path(run_dir, protocol.RESULT_FILE)
    if not path or not path.exists():
        return 'None'
    size, kind = path.stat().st_size, _recorded_type(run_dir)
    if size <= SHOWN_PICKLE_BYTES:
        try:
            value = load_result(run_dir, module)
        except ResultNotLoadable as e:  # the run went well: say what came back, and how to load it here
            if hints is not None:
                hints.append(e.hint)
            return f'the value {e.summary}'
        except Exception as e:  # noqa: BLE001 - any other unpickling failure: say so, do not fail
            return f'<{kind}, {format_bytes(size)} pickled, in {path}; not loadable here: {type(e).__name__}: {e}>'
        text = repr(value)
        if len(text) <= SHOWN_REPR_CHARS:
            return text
        kind = type(value).__name__
    return f'<{kind}, {format_bytes(size)} pickled, in {path}>'


def _recorded_type(run_dir) -> str:
    try:
        return str(json.loads(read_text(run_dir, protocol.RESULT_INFO_FILE) or '{}').get('type') or 'value')
    except (ValueError, AttributeError):
        return 'value'


class _Counter:
    """A file that only counts what is written to it."""

    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)


def shown_object(value) -> str:
    """A value in memory (an attached run's) as :func:`shown_value` shows a kept one: a large one as
    ``<TYPE, SIZE pickled>`` (pickled into a counter, never into memory)."""
    counter = _Counter()
    try:
        import cloudpickle
        cloudpickle.dump(value, counter, protocol=4)
    except Exception:  # noqa: BLE001 - not picklable: its repr it is
        counter.size = 0
    if counter.size <= SHOWN_PICKLE_BYTES:
        text = repr(value)
        if len(text) <= SHOWN_REPR_CHARS:
            return text
    return f'<{type(value).__name__}, {format_bytes(counter.size)} pickled>'


def read_text(run_dir, name: str) -> str | None:
    path = run_dir and Path(run_dir, name)
    if not path or not path.exists():
        return None
    return path.read_text(encoding='utf-8', errors='replace')
