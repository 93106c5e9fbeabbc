"""Amounts and durations as people read them, one style each, for every line we print: the step lines,
progress lines, status tables, transfer summaries and the sizes of return values.

* Bytes: decimal units, as Docker prints image and layer sizes: ``512 B``, ``5.9 kB``, ``637.0 MB``,
  ``1.20 GB`` (:func:`format_bytes`).
* Durations: ``0.31 s``, ``12.4 s``, ``2 min 05 s``, ``1 h 02 min``, ``2 d 04 h`` (:func:`format_duration`);
  whole seconds where a fraction means nothing (an ETA rounded up; a run's duration from two timestamps:
  ``42 s``).

Why not a library: ``humanize`` is the well-kept one, and neither of its answers is ours. Its
``naturalsize`` writes every scale with one format (``1.2 GB``, ``300 Bytes``: no ``B``, no second decimal
for gigabytes), and its durations are words rounded to one unit (``naturaldelta``: ``2 minutes``) or long
sentences (``precisedelta``: ``2 minutes and 5.31 seconds``), with no compact step timing like ``0.31 s``.
Matching Docker's figures through its options would take more code than these few functions.
"""
from __future__ import annotations
import math


def format_bytes(n: float) -> str:
    """Decimal units, as Docker prints them: ``512 B``, ``5.9 kB``, ``637.0 MB``, ``1.20 GB``."""
    n = max(0.0, float(n))
    if n < 1000:
        return f'{n:.0f} B'
    for unit in ('kB', 'MB', 'GB', 'TB'):
        n /= 1000
        if n < 1000 or unit == 'TB':
            return f'{n:.2f} {unit}' if unit in ('GB', 'TB') else f'{n:.1f} {unit}'
    raise AssertionError('unreachable')


def format_duration(seconds: float, whole: bool = False) -> str:
    """``0.31 s``, ``12.4 s``, ``2 min 05 s``, ``1 h 02 min``, ``2 d 04 h`` (the two largest units from a
    minute on); ``whole``: no fraction of a second (``7 s``, ``42 s``)."""
    seconds = max(0.0, float(seconds))
    if seconds < 60 and whole:
        return f'{int(seconds)} s'
    if seconds < 10:
        return f'{seconds:.2f} s'
    if seconds < 60:
        return f'{seconds:.1f} s'
    total = int(seconds) if whole else int(round(seconds))
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f'{days} d {hours:02d} h'
    if hours:
        return f'{hours} h {minutes:02d} min'
    return f'{minutes} min {secs:02d} s'


def format_eta(seconds: float) -> str:
    """The time left, in whole seconds rounded up: ``7 s``, ``2 min 05 s``."""
    return format_duration(math.ceil(max(0.0, seconds)), whole=True)


def format_amount(n: float, unit: str) -> str:
    """``n`` of ``unit``: bytes as :func:`format_bytes`, anything else counted (``3 layers``)."""
    return format_bytes(n) if unit == 'B' else f'{n:.0f} {unit}'.rstrip()


def duration(start, end) -> str:
    """``end - start`` (datetimes) in whole seconds: ``42 s``, ``12 min 05 s``, ``3 h 07 min``, ``2 d 04 h``;
    ``-`` when either is unknown."""
    if start is None or end is None:
        return '-'
    seconds = max(0, int((end - start).total_seconds()))  # clocks of two machines may differ a little
    return format_duration(seconds, whole=True)
