"""Quiet, informative progress: one updating line per long operation, and short notes for the step line.

``Progress(label, total=None, unit='B')`` (a context manager) shows how far an operation is::

    with Progress('push', total=637_000_000) as bar:
        for chunk in chunks:
            bar.update(len(chunk))          # bytes done since the last call
        # or bar.set(done, total): absolute figures (a Docker engine's JSON progress sums)
        bar.note('Collecting numpy')        # a short status shown after the figures

On a terminal it is ONE line, redrawn in place (at most every 0.1 s): bytes done / total, percent, rate and
ETA. Elsewhere (a log file, CI) it prints a plain line at most every :data:`PLAIN_INTERVAL_S` seconds, so
an operation shorter than that prints nothing there. ``close(summary)`` erases the terminal line, ends a
series of plain lines with the summary, and records the summary with :func:`step_note`: the doit
reporter shows it after the step's duration (``push:Train  14.2 s (637.0 MB in 14.1 s, 45.2 MB/s)``).
``silent=True`` prints and records nothing. A printing function gets its bar from its
:class:`~tg_pipeline.console.console.Console` (``console.progress(label)``: its ``err`` stream, quiet or not).

:func:`step_note` records a short detail of the step now running (``code layer only``, ``nothing
sent``); :func:`take_step_notes` hands them over (the reporter, once per step). Standard library only.
"""
from __future__ import annotations

import shutil
import sys
import time
from tg_pipeline.console.units import format_amount, format_bytes, format_duration, format_eta

PLAIN_INTERVAL_S = 5.0   # not a terminal: one plain line at most this often
TTY_INTERVAL_S = 0.1     # a terminal: redraw at most this often
MAX_NOTES = 20           # notes kept when nobody takes them (the Python API has no reporter)

_notes: list[str] = []


def step_note(text: str) -> None:
    """Record a short detail of the step now running, shown by the reporter after its duration."""
    text = ' '.join(str(text).split())
    if text and text not in _notes:
        _notes.append(text)
        del _notes[:-MAX_NOTES]


def take_step_notes() -> list[str]:
    """The notes recorded since the last call (and forget them)."""
    found = list(_notes)
    _notes.clear()
    return found


class Progress:
    """One operation's progress (see the module's doc). ``out``: default ``sys.stderr``; ``tty``: default
    ``out.isatty()``; ``clock``: seconds, monotonic (tests inject one). ``keep``: the summary is a line of
    its own instead of a step note (inside a step that streams its output, where no step line follows)."""

    def __init__(self, label: str, total: float | None = None, unit: str = 'B', out=None, silent: bool = False,
                 tty: bool | None = None, clock=time.monotonic, interval: float = PLAIN_INTERVAL_S,
                 keep: bool = False):
        self.label, self.total, self.unit, self.silent, self.keep = label, total, unit, silent, keep
        self.out = sys.stderr if out is None else out
        self.tty = isatty(self.out) if tty is None else tty
        self.clock, self.interval = clock, interval
        self.done = 0.0
        self.status = ''
        self.started = self.clock()
        self._shown_at = None if self.tty else self.started  # plain lines: the first after one interval
        self._plain_lines = 0
        self._drawn = 0  # characters of the terminal line now drawn
        self.closed = False

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(summary='' if kind else None)  # failed: the error says what happened

    def update(self, n: float) -> None:
        """``n`` more done since the last call."""
        self.done += n
        self._show()

    def set(self, done: float, total: float | None = None) -> None:
        """Absolute figures: ``done`` so far (and the total, when it becomes known or changes)."""
        self.done = done
        if total is not None:
            self.total = total
        self._show()

    def note(self, text: str) -> None:
        """A short status shown after the figures (e.g. the pip line being installed)."""
        self.status = ' '.join(str(text).split())
        self._show()

    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.started)

    def rate(self) -> float | None:
        elapsed = self.elapsed()
        return self.done / elapsed if elapsed > 0 and self.done > 0 else None

    def line(self) -> str:
        """The figures now: ``push  312.4 MB / 637.0 MB  49%  45.2 MB/s  ETA 7 s  (note)``."""
        parts = [self.label]
        if self.done or self.total:
            amount = format_amount(self.done, self.unit)
            if self.total:
                amount += f' / {format_amount(self.total, self.unit)}'
                parts += [amount, f'{min(100.0, 100.0 * self.done / self.total):.0f}%']
            else:
                parts.append(amount)
            rate = self.rate()
            if rate and self.unit == 'B':
                parts.append(f'{format_bytes(rate)}/s')
            if rate and self.total and self.total > self.done:
                parts.append(f'ETA {format_eta((self.total - self.done) / rate)}')
        else:
            parts.append(format_duration(self.elapsed()))
        if self.status:
            parts.append(f'({self.status})' if len(parts) > 1 else self.status)
        return '  '.join(parts)

    def summary(self) -> str:
        """``637.0 MB in 14.1 s, 45.2 MB/s`` (bytes), ``3 layers in 0.52 s`` (other units); '' when none done."""
        if not self.done:
            return ''
        text = f'{format_amount(self.done, self.unit)} in {format_duration(self.elapsed())}'
        rate = self.rate()
        if rate and self.unit == 'B' and self.elapsed() >= 0.5:
            text += f', {format_bytes(rate)}/s'
        return text

    def close(self, summary: str | None = None) -> None:
        """End it: erase the terminal line; after plain lines (or with ``keep``), one final line; record the
        summary as a step note unless ``keep`` (``summary=None``: :meth:`summary`; ``''``: no summary at all)."""
        if self.closed:
            return
        self.closed = True
        if self.silent:
            return
        text = self.summary() if summary is None else summary
        if self.tty:
            self._erase()
        if text and (self.keep or (self._plain_lines and not self.tty)):
            self._write(f'{self.label}  {text}\n')
        if text and not self.keep:
            step_note(text)

    def _show(self) -> None:
        if self.silent or self.closed:
            return
        now = self.clock()
        if self._shown_at is not None and now - self._shown_at < (TTY_INTERVAL_S if self.tty else self.interval):
            return
        self._shown_at = now
        if self.tty:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            text = self.line()[:width]
            self._write('\r' + text + ' ' * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        else:
            self._plain_lines += 1
            self._write(self.line() + '\n')

    def _erase(self) -> None:
        if self._drawn:
            self._write('\r' + ' ' * self._drawn + '\r')
            self._drawn = 0

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is never worth a failure
            pass


def isatty(stream) -> bool:
    """Whether ``stream`` is a terminal (a stream that cannot say is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False
