"""A job declared in pipeline.toml by ``factory`` with TOML arguments travels as its reference: a plain record.

Standard library only (copied into every job package as ``MODULE._tg_runtime.reference``). The record is a dict
of plain values, pickled with protocol 4: loading it imports nothing, so the host never imports the job's modules
to package a code edit (a job whose modules import torch or scikit-learn at their top costs the host no import).
The entry point turns it into the job in the container (:func:`build`), and a failure there (the factory does not
resolve, does not take the arguments, raises, or returns no job) is one ``ERROR:``/``TIP:`` paragraph that names
pipeline.toml's key and the project's files (:class:`LoadError`), never our frames.

Record: ``{"tg_pipeline_job": 1, "job": NAME, "factory": "module:Name", "args": [...], "kwargs": {...},
"config": "pipeline.toml", "line": N}`` (``line``: the factory's line there, or None).
"""
from __future__ import annotations

import importlib

KEY = 'tg_pipeline_job'  # the record's mark, and its format's version
VERSION = 1


def make_record(job: str, factory: str, args, kwargs, config: str = 'pipeline.toml', line=None) -> dict:
    """The record of a job built by ``factory(*args, **kwargs)``: plain values only."""
    return {KEY: VERSION, 'job': job, 'factory': factory, 'args': list(args), 'kwargs': dict(kwargs),
            'config': config, 'line': line}


def is_record(value) -> bool:
    return isinstance(value, dict) and value.get(KEY) == VERSION


class LoadError(Exception):
    """The job could not be built from its record: ``problem`` and ``hint`` make its ERROR/TIP paragraph."""

    def __init__(self, problem: str, hint: str):
        super().__init__(problem)
        self.problem, self.hint = problem, hint

    def paragraph(self) -> str:
        return f'ERROR: {self.problem}\nTIP: {self.hint}'


def _where(record: dict) -> str:
    line = record.get('line')
    return f"{record.get('config') or 'pipeline.toml'}{':%d' % line if line else ''}, key " \
           f"'jobs.{record.get('job')}.factory'"


def resolve(record: dict, shown=str, qualified=None):
    """The factory the record names (imported); ``shown`` turns a file's path into what the user knows it as,
    ``qualified`` a module's name into the one to import (a source root's module inside its job package)."""
    factory = record['factory']
    module_name, _, attr = factory.partition(':')
    try:
        target = importlib.import_module(qualified(module_name) if qualified else module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + '.')):
            raise LoadError(f'{_where(record)}: factory {factory!r}: there is no module {module_name!r} in the job '
                            f'package', 'the module must be in a source root; give its path relative to the folder '
                                        'of pipeline.toml, e.g. jobs.train:Train') from None
        raise
    for part in attr.split('.'):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LoadError(f'{_where(record)}: factory {factory!r}: module {module_name!r} has no {attr!r}',
                            f'check the class or function name defined in {shown(target.__file__)} '
                            f'(or the factory in {record.get("config")})') from None
    return target


def _defined_at(target, shown) -> str:
    import inspect
    try:
        return f'{shown(inspect.getsourcefile(target))}:{inspect.getsourcelines(target)[1]}'
    except (TypeError, OSError):
        return repr(target)


def check_arguments(record: dict, target, shown=str) -> None:
    """Raise :class:`LoadError` when ``target`` cannot be called with the record's arguments."""
    import inspect  # only here: a container that builds its job calls this only when the call raised TypeError
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*record['args'], **record['kwargs'])
    except TypeError as e:
        raise LoadError(f'{_where(record)}: factory {record["factory"]!r} (defined at {_defined_at(target, shown)}) '
                        f'does not accept the configured args/kwargs: {e}',
                        f'make args/kwargs of [jobs.{record.get("job")}] in {record.get("config")} match its '
                        f'signature') from None


def build(record: dict, shown=str, qualified=None):
    """The job: the factory called with the record's arguments. An exception the factory raises is the user's
    own and propagates (the entry point shows its traceback); a value that is no job is a :class:`LoadError`."""
    target = resolve(record, shown, qualified)
    try:
        job = target(*record['args'], **record['kwargs'])
    except TypeError:  # the arguments do not fit the signature (one paragraph), or the factory's own TypeError
        check_arguments(record, target, shown)
        raise
    if not hasattr(job, 'run') and not callable(job):
        text = repr(job)
        text = text if len(text) <= 60 else text[:57] + '...'
        raise LoadError(f'{_where(record)}: factory {record["factory"]!r} returned a {type(job).__qualname__} '
                        f'({text}), which is no job: it has no run() method and is not callable',
                        f'make {_defined_at(target, shown)} return the job: an object with a run() method, or a '
                        f'function the container calls')
    return job
