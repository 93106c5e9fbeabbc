"""A pickled payload described for people without running any of its code: its class (or function) and its
attributes' reprs, as ``doit diff`` and ``doit show`` print them.

The pickle is read by Python's own unpickler with every global it names replaced by a stand-in
(:class:`Stub`): nothing is imported, no constructor or ``__setstate__`` of the job's code runs, so a payload
whose modules are not importable here (or which would do something when loaded) is described all the same. A
class or function that cloudpickle took by value (defined in a notebook or ``__main__``) is named as such.
What the description cannot show (a function's code, an array's bytes) differs by the payload's hash.
"""
from __future__ import annotations

import io
import json
import pickle
from typing import Any, Callable, ClassVar

REPR_CHARS = 200
BY_VALUE_MAKERS = {'_make_skeleton_class': 1, '_make_function': 2}  # cloudpickle's makers: index of the name


class Stub:
    """Whatever a global of the pickle stands for: a name; called, a value made by it (args, state)."""

    def __init__(self, origin: str, args=(), called: bool = False):
        self.origin, self.args, self.called, self.state = origin, tuple(args), called, None
        self.items: list = []

    def __call__(self, *args, **kwargs):
        if self.origin.endswith('_setstate') and len(args) == 2 and isinstance(args[0], Stub):
            args[0].state = args[1]  # cloudpickle's state setters (of a class or function taken by value)
            return args[0]
        return Stub(self.origin, args + ((kwargs,) if kwargs else ()), called=True)

    def __setstate__(self, state):
        self.state = state

    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    def __setitem__(self, key, value):
        self.items.append((key, value))

    @property
    def name(self) -> str:
        """The class or function a value is made by, as people name it."""
        function = self.origin.rpartition('.')[2]
        if self.called and function in BY_VALUE_MAKERS:
            named = self.attributes().get('__qualname__') or (self.args[BY_VALUE_MAKERS[function]]
                                                               if len(self.args) > BY_VALUE_MAKERS[function] else '')
            kind = 'class' if function == '_make_skeleton_class' else 'function'
            return f'{named or "?"} ({kind} pickled by value)'
        return self.origin

    @property
    def by_value_function(self) -> bool:
        return self.called and self.origin.endswith('._make_function')

    def attributes(self) -> dict:
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, slots)
        return dict(state) if isinstance(state, dict) else ({'(state)': state} if state is not None else {})

    def __repr__(self):
        if not self.called:
            return self.origin
        attributes = self.attributes()
        if attributes:
            inner = ', '.join(f'{k}={_short(v)}' for k, v in attributes.items())
        else:
            inner = ', '.join(_short(a) for a in self.args)
        return _cut(f'{self.name}({inner})')


def _cut(text: str) -> str:
    return text if len(text) <= REPR_CHARS else text[:REPR_CHARS - 3] + '...'


def _short(value) -> str:
    return _cut(repr(value))


class _Reader(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be given other meanings
    dispatch: ClassVar[dict[int, Callable[[Any], Any]]] = dict(pickle._Unpickler.dispatch)
    stack: list  # the unpickler's own (set by load): typeshed does not declare them
    append: Callable[[Any], None]

    def find_class(self, module, name):
        return Stub(f'{module}.{name}')

    def persistent_load(self, pid):
        return Stub('persistent', (pid,), called=True)

    def _new(self, cls, args, kwargs=None):
        origin = cls.name if isinstance(cls, Stub) else getattr(cls, '__qualname__', repr(cls))
        self.append(Stub(origin, tuple(args) + ((kwargs,) if kwargs else ()), called=True))

    def load_newobj(self):
        args = self.stack.pop()
        self._new(self.stack.pop(), args)

    def load_newobj_ex(self):
        kwargs, args = self.stack.pop(), self.stack.pop()
        self._new(self.stack.pop(), args, kwargs)

    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex


def describe_object(value, indent: str = '') -> list[str]:
    """Lines naming ``value``'s class (or function) and its attributes, one per line; a job of pipeline.toml
    that travelled as its reference, as its factory and the arguments it is called with."""
    from tg_pipeline.runtime.reference import is_record
    if is_record(value):
        return [f'{indent}{value["factory"]}(...), built where it runs',
                f'{indent}  args = {_short(value["args"])}', f'{indent}  kwargs = {_short(value["kwargs"])}']
    if isinstance(value, Stub) and value.by_value_function:
        return [f'{indent}{value.name}']
    if isinstance(value, Stub) and value.called:
        lines = [f'{indent}{value.name}']
        attributes = value.attributes()
        lines += [f'{indent}  .{k} = {_short(v)}' for k, v in sorted(attributes.items(), key=lambda i: str(i[0]))]
        if value.items:
            lines.append(f'{indent}  items {_short(value.items)}')
        elif not attributes and value.args:
            lines.append(f'{indent}  made with {_short(value.args)}')
        return lines
    if isinstance(value, Stub):
        return [f'{indent}{value.origin}']
    return [f'{indent}{_short(value)}']


def is_reference(data: bytes) -> bool:
    """Whether a payload is the reference of a job of pipeline.toml (or a sweep's list of them): its description
    says all that runs (factory, arguments); what else its bytes hold is where it was declared."""
    from tg_pipeline.runtime.reference import is_record
    try:
        value = _Reader(io.BytesIO(data)).load()
    except Exception:  # noqa: BLE001 - not a pickle this reader follows: not a reference
        return False
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, tuple) and len(v) == 2 and is_record(v[1]) for v in value)
    return is_record(value)


def describe(name: str, data: bytes) -> list[str]:
    """The payload object ``name`` (its pickled bytes) as lines; a sweep's variants one by one. A payload kept
    as JSON (a plain record of the job's declaration) is shown as its keys and values."""
    if data[:1] in (b'{', b'['):
        try:
            record = json.loads(data)
        except ValueError:
            record = None
        if isinstance(record, dict):
            return [f'{name}:'] + [f'  {k} = {_short(v)}' for k, v in sorted(record.items())]
    try:
        value = _Reader(io.BytesIO(data)).load()
    except Exception as e:  # noqa: BLE001 - not a pickle this reader follows: its size and hash say the rest
        return [f'{name}: {len(data)} bytes, not described ({type(e).__name__}: {e})']
    if name == 'variants' and isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        lines = [f'variants: {len(value)}']
        for label, job in value:
            lines += [f'  variant {label}:'] + describe_object(job, '    ')
        return lines
    return [f'{name}:'] + describe_object(value, '  ')
