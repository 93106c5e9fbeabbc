"""The one object every printing function takes: :class:`Console` says where our lines go and how many.

``Console(quiet=False, verbose=False, out=None, err=None, tty=None)``:

* ``out`` / ``err``: the streams of lines and of progress; None (the default) means ``sys.stdout`` /
  ``sys.stderr`` as they are when a line is written, so that a redirected ``sys.stdout`` and pytest's
  ``capsys`` see what is printed.
* ``quiet``: print nothing and leave no step note (the Python API's ``Containering.silent``; its run steps'
  image delivery; a run whose caller only wants its values). What answers a Ctrl-C (:meth:`Console.warn`)
  shows all the same.
* ``verbose``: the whole of a long output as it comes instead of a progress line (``[docker] verbose = 1``:
  a build's log).
* ``tty``: whether ``err`` is a terminal (None: ask the stream); a terminal gets one progress line redrawn
  in place, anything else plain lines now and then (see :mod:`.progress`).

:data:`CONSOLE` is the process's console, the default of every function that prints. A Console never
changes; :meth:`Console.replace` makes one that differs (``console.replace(quiet=True)``).
"""
from __future__ import annotations

import sys

from tg_pipeline.console.progress import Progress, isatty, step_note


class Console:
    """Where our lines go (``out``, ``err``), how many (``quiet``, ``verbose``), and whether ``err`` is a
    terminal (see the module's doc)."""

    __slots__ = ('quiet', 'verbose', '_out', '_err', '_tty')

    def __init__(self, quiet: bool = False, verbose: bool = False, out=None, err=None, tty: bool | None = None):
        self.quiet, self.verbose = bool(quiet), bool(verbose)
        self._out, self._err, self._tty = out, err, tty

    def __repr__(self) -> str:
        return f'Console(quiet={self.quiet}, verbose={self.verbose})'

    @property
    def out(self):
        """The stream of lines (our own and a job's stdout): ``sys.stdout`` as it is now, unless given."""
        return sys.stdout if self._out is None else self._out

    @property
    def err(self):
        """The stream of progress lines, a job's stderr and what answers a Ctrl-C: ``sys.stderr`` as it is
        now, unless given."""
        return sys.stderr if self._err is None else self._err

    @property
    def tty(self) -> bool:
        """Whether ``err`` (where progress goes) is a terminal."""
        return isatty(self.err) if self._tty is None else self._tty

    def replace(self, **changes) -> 'Console':
        """This console with some of ``quiet``, ``verbose``, ``out``, ``err``, ``tty`` changed."""
        values = dict(quiet=self.quiet, verbose=self.verbose, out=self._out, err=self._err, tty=self._tty)
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f'Console has no {", ".join(sorted(unknown))}')
        return Console(**{**values, **changes})

    def print(self, *values, err: bool = False, sep: str = ' ', end: str = '\n') -> None:
        """A line on ``out`` (``err``: on ``err``), flushed; nothing when quiet."""
        if not self.quiet:
            self.write(sep.join(map(str, values)) + end, err=err)

    def write(self, text: str, err: bool = False) -> None:
        """Text as it is (a job's output, a log), flushed; nothing when quiet."""
        if text and not self.quiet:
            stream = self.err if err else self.out
            stream.write(text)
            stream.flush()

    def warn(self, text: str) -> None:
        """A line on ``err`` even when quiet: what happened after a Ctrl-C, and what is left running."""
        stream = self.err
        stream.write(f'{text}\n')
        stream.flush()

    def progress(self, label: str, total: float | None = None, unit: str = 'B', keep: bool = False) -> Progress:
        """A progress line on ``err`` (see :class:`~.progress.Progress`); quiet: one that shows and notes nothing."""
        return Progress(label, total=total, unit=unit, out=self.err, silent=self.quiet, tty=self._tty, keep=keep)

    def step_note(self, text: str) -> None:
        """A short detail of the step now running, shown after its duration (see :func:`~.progress.step_note`);
        nothing when quiet."""
        if not self.quiet:
            step_note(text)


CONSOLE = Console()  # the process's: sys.stdout and sys.stderr as they are when a line is written
