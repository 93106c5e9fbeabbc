"""Step 1a: build the job from its factory (``module:Name`` of ``[jobs.NAME] factory``), in this process.

This runs the user's own code (the module's import, the class's ``__init__`` or the function): when it
raises, the error is theirs, so it is told with their frames only (the traceback trimmed to files under
the project folder, not ours nor installed packages'), as one ERROR/TIP paragraph. A factory that returns
something that is no job (no ``run()`` and not callable) is refused here too, before anything is pickled.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any

from tg_pipeline.errors import ConfigError, JobCodeError

_OURS = Path(__file__).resolve().parents[1]  # the tg_pipeline package


def user_frames(error: BaseException, project_root: Path) -> list[traceback.FrameSummary]:
    """The frames of ``error``'s traceback in files under ``project_root``, but for installed packages'
    (a virtual environment in the project folder) and tg_pipeline's own."""
    from tg_pipeline.job.pickling import _installed_dirs, _under
    root, skip = Path(project_root).resolve(), [*_installed_dirs(), _OURS]
    frames = []
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith('<'):  # <frozen importlib._bootstrap>, <string>
            continue
        path = Path(frame.filename).resolve()
        if _under(path, [root]) and not _under(path, skip):
            frames.append(frame)
    return frames


def user_traceback(error: BaseException, project_root: Path) -> tuple[str, str]:
    """(the error's last line, the user's frames before it as Python prints them; for a SyntaxError its file,
    line and caret)."""
    lines = traceback.format_list(user_frames(error, project_root))
    *context, last = ''.join(traceback.format_exception_only(type(error), error)).rstrip('\n').split('\n')
    return last, (''.join(lines) + ''.join(f'{line}\n' for line in context)).rstrip('\n')


def _raised(what: str, error: BaseException, project_root: Path, where: dict, hint: str = '') -> JobCodeError:
    frames = user_frames(error, project_root)
    at = f'{frames[-1].filename}:{frames[-1].lineno}' if frames else ''
    if isinstance(error, SyntaxError) and error.filename:
        at = f'{error.filename}:{error.lineno}'
    hint = hint or (f'fix it in your code{" at " + at if at else ""}: the job is built in this process when it is '
                    f'serialized, before anything is packaged')
    last, shown = user_traceback(error, project_root)
    return JobCodeError(f'{what} raised {last}' + (f'\n{shown}' if shown else ''), hint=hint, **where)


def _import(factory: str, module_name: str, project_root: Path, where: dict):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + '.')):
            raise ConfigError(f'factory {factory!r}: cannot import module {module_name!r} ({e})', **where,
                              hint='give the module path relative to the folder of pipeline.toml, '
                                   'e.g. jobs.example_job:ExampleJob') from None
        top = (e.name or '').partition('.')[0]
        raise _raised(f'importing {module_name} (factory {factory!r})', e, project_root, where,
                      hint=f'install {top!r} here too (the job is built in this process before it is pickled) '
                           f'and list it in dependencies for the image') from None
    except Exception as e:  # the module's own code failed: a SyntaxError, an error at import time
        raise _raised(f'importing {module_name} (factory {factory!r})', e, project_root, where) from None


def _accepts(target, args: list, kwargs: dict) -> str | None:
    """Why ``target`` cannot be called with these arguments, or None (also when its signature is unknown)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        return str(e)
    return None


def _defined_at(target) -> str:
    try:
        return f'{inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]}'
    except (TypeError, OSError):
        return repr(target)


def make_job(factory: str, args: list, kwargs: dict, project_root: Path, config_file: str | None = None,
             key: str | None = None, line: int | None = None):
    """Import ``module:Name`` and call it with the configured arguments; return the job it builds."""
    module_name, _, attr = factory.partition(':')
    root = str(project_root)
    if root not in sys.path:
        sys.path.insert(0, root)
    where: dict[str, Any] = dict(file=config_file, key=key, line=line)
    module = _import(factory, module_name, Path(project_root), where)
    target = module
    for part in attr.split('.'):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f'factory {factory!r}: module {module_name!r} has no {attr!r}', **where,
                              hint=f'check the class or function name defined in {module.__file__}') from None
    mismatch = _accepts(target, args, kwargs)
    if mismatch:
        raise ConfigError(f'factory {factory!r} does not accept the configured args/kwargs: {mismatch}', **where,
                          hint='make args/kwargs match its signature')
    try:
        job = target(*args, **kwargs)
    except Exception as e:
        raise _raised(f'factory {factory!r}', e, Path(project_root), where) from None
    if not hasattr(job, 'run') and not callable(job):
        kind = type(job).__qualname__ if type(job).__module__ == 'builtins' else \
            f'{type(job).__module__}.{type(job).__qualname__}'
        raise JobCodeError(f'factory {factory!r} returned a {kind} ({_short(job)}), which is no job: it has no '
                           f'run() method and is not callable', **where,
                           hint=f'make {_defined_at(target)} return the job: an object with a run() method, '
                                f'or a function the container calls')
    return job


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'
