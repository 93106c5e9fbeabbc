"""The job's traceback in the user's terms (standard library only; copied into every job package).

A file of the job package (``/opt/.../MODULE-VERSION/MODULE/jobs/train.py`` in a container) is shown as the
project's own path (``jobs/train.py``), a frame as ``jobs/train.py:42, in run`` with its source line below, and
our own frames (the entry point's, tg_pipeline's in an attached run, the import machinery's) are left out unless
``TG_PIPELINE_DEBUG`` is set. Chained exceptions (``raise ... from``, an error while handling another) are kept,
each in the same terms.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False  # (typing itself would cost a container's start 3 ms)
if TYPE_CHECKING:
    import traceback

DEBUG_ENV = 'TG_PIPELINE_DEBUG'


class Paths:
    """Where files are and what the user calls them: ``mapping`` (folder prefix -> shown prefix, the first that
    matches wins) and ``ours`` (folders whose frames are hidden)."""

    def __init__(self, mapping, ours=()):
        self.mapping = [(os.path.join(os.path.abspath(k), ''), os.path.join(v, '') if v else '') for k, v in mapping]
        self.ours = [os.path.join(os.path.abspath(folder), '') for folder in ours]

    def shown(self, filename: str) -> str:
        if not filename or filename.startswith('<'):
            return filename
        path = os.path.abspath(filename)
        for prefix, replacement in self.mapping:
            if path.startswith(prefix):
                return replacement + path[len(prefix):]
        return filename

    def hidden(self, filename: str) -> bool:
        if filename.startswith('<frozen') or filename.startswith('<string>'):
            return True
        path = os.path.abspath(filename) if filename and not filename.startswith('<') else filename
        return any(path.startswith(folder) for folder in self.ours)


def package_paths(package_dir: str, roots, root_paths=None) -> Paths:
    """The paths of a job package: its source roots as the project's folders (``root_paths``: root name -> its
    path relative to pipeline.toml; default the name), its ``_tg_runtime`` ours."""
    root_paths = root_paths or {}
    mapping = [(os.path.join(package_dir, root), root_paths.get(root, root)) for root in roots]
    return Paths(mapping, [os.path.join(package_dir, '_tg_runtime'), os.path.dirname(os.path.abspath(__file__))])


def debugging(environ=None) -> bool:
    return bool((os.environ if environ is None else environ).get(DEBUG_ENV))


def _frames(stack, paths: Paths, debug: bool) -> list[str]:
    lines = []
    for frame in stack:
        if not debug and paths.hidden(frame.filename):
            continue
        lines.append(f'  {paths.shown(frame.filename)}:{frame.lineno}, in {frame.name}\n')
        if frame.line:
            lines.append(f'    {frame.line.strip()}\n')
    return lines


def _one(error: traceback.TracebackException, paths: Paths, debug: bool, seen: set) -> list[str]:
    seen.add(id(error))
    lines = []
    if error.__cause__ is not None and id(error.__cause__) not in seen:
        lines += _one(error.__cause__, paths, debug, seen)
        lines.append('\nThe above exception was the direct cause of the following exception:\n\n')
    elif error.__context__ is not None and not error.__suppress_context__ and id(error.__context__) not in seen:
        lines += _one(error.__context__, paths, debug, seen)
        lines.append('\nDuring handling of the above exception, another exception occurred:\n\n')
    frames = _frames(error.stack, paths, debug)
    if frames:
        lines.append('Traceback (most recent call last):\n')
        lines += frames
    if getattr(error, 'filename', None):  # a SyntaxError's file
        error.filename = paths.shown(error.filename)
    lines += list(error.format_exception_only())
    return lines


def format_error(error: BaseException, paths: Paths, debug: bool | None = None) -> str:
    """``error``'s traceback as the user reads it (see the module's docstring)."""
    import traceback  # only when a job failed: a container that runs its job to the end never imports it
    debug = debugging() if debug is None else debug
    found = traceback.TracebackException(type(error), error, error.__traceback__, capture_locals=False)
    return ''.join(_one(found, paths, debug, set()))


def last_frame(error: BaseException, paths: Paths) -> str:
    """``jobs/train.py:42``: where the error was raised, in the user's files (our frames skipped); '' if none."""
    import traceback
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not paths.hidden(frame.filename):
            return f'{paths.shown(frame.filename)}:{frame.lineno}'
    return ''
