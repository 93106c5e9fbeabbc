"""The code of a job that cloudpickle took by value (a class or function defined in a notebook, or in the script
run as ``__main__``): the source of the cells (or the script) that defined it, as the run's code. The payload
holds that code compiled; this keeps what a person wrote, read from Python's line cache (IPython puts every cell
there under the file name its functions carry)."""
from __future__ import annotations

import inspect
import linecache

MAIN = '__main__'


def _functions(owner) -> list:
    """The functions of a class (methods, static, class methods, properties), or the function itself."""
    if inspect.isfunction(owner):
        return [owner]
    found = []
    for value in vars(owner).values():
        value = getattr(value, '__func__', value)
        if isinstance(value, property):
            found += [f for f in (value.fget, value.fset, value.fdel) if f is not None]
        elif inspect.isfunction(value):
            found.append(value)
    return found


def _defined_in_main(value) -> list:
    """The classes and functions of ``value`` (itself, its class and that class's bases) defined in __main__."""
    if inspect.isfunction(value) or inspect.isclass(value):
        owners = [value] + (list(value.__mro__[1:]) if inspect.isclass(value) else [])
    else:
        owners = list(type(value).__mro__)
    return [o for o in owners if getattr(o, '__module__', None) == MAIN]


def _values(payload: dict) -> list:
    """The payload's objects and, one level down, the items of a list, tuple or dict (a sweep's variants)."""
    found = []
    for value in payload.values():
        found.append(value)
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
        for item in items:
            found += list(item) if isinstance(item, tuple) else [item]
    return found


def cell_sources(payload: dict) -> str:
    """The source of every cell (or script) that defined a class or function of the payload pickled by value; ''
    when none was (everything went by reference: its code is in the sdist)."""
    files = []
    for value in _values(payload):
        for owner in _defined_in_main(value):
            for function in _functions(owner):
                name = function.__code__.co_filename
                if name not in files:
                    files.append(name)
    parts = []
    for name in files:
        lines = linecache.getlines(name)
        if lines:
            parts.append(f'# ---- {name}\n' + ''.join(lines).rstrip('\n') + '\n')
    return '\n'.join(parts)
