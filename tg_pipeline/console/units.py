"""Amounts and durations as people read them: bytes in Docker's decimal units, step and ETA durations,
run durations in status tables."""
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


def format_duration(seconds: float) -> str:
    """``0.31 s``, ``12.4 s``, ``2 min 05 s``, ``1 h 02 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f'{seconds:.2f} s'
    if seconds < 60:
        return f'{seconds:.1f} s'
    whole = int(round(seconds))
    if whole < 3600:
        return f'{whole // 60} min {whole % 60:02d} s'
    return f'{whole // 3600} h {whole % 3600 // 60:02d} min'


def format_eta(seconds: float) -> str:
    """Whole seconds: ``7 s``, ``2 min 05 s``."""
    whole = int(math.ceil(max(0.0, seconds)))
    return f'{whole} s' if whole < 60 else format_duration(whole)


def format_amount(n: float, unit: str) -> str:
    return format_bytes(n) if unit == 'B' else f'{n:.0f} {unit}'.rstrip()


def duration(start, end) -> str:
    """``end - start`` for people: ``42s``, ``12m 05s``, ``3h 07m``, ``2d 04h``; ``-`` when either is unknown."""
    if start is None or end is None:
        return '-'
    seconds = max(0, int((end - start).total_seconds()))  # clocks of two machines may differ a little
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f'{days}d {hours:02d}h'
    if hours:
        return f'{hours}h {minutes:02d}m'
    return f'{minutes}m {seconds:02d}s' if minutes else f'{seconds}s'
