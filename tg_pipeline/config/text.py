"""The text side of the configuration: where a key sits in pipeline.toml, and values as TOML text.

:class:`LineIndex` finds the line of a ``key = value`` inside a ``[table]`` (tomllib gives values, not
positions). :func:`toml_item` makes a value a tomlkit item, for ``doit config`` (:mod:`.describe`), the
values ``doit help`` shows and the TIPs that name a value to write.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

_HEADER = re.compile(r'^\[\s*([^\[\]]+?)\s*\]')
_KEY = re.compile(r'^([A-Za-z0-9_\-."]+)\s*=')
_SURROGATE = re.compile('[\ud800-\udfff]')


class LineIndex:
    """Line numbers of the tables and keys of a TOML text (the first occurrence of each)."""

    def __init__(self, text: str):
        self.index: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        table = ''
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            header = _HEADER.match(stripped)
            if header:
                table = re.sub(r'\s*\.\s*', '.', header.group(1)).replace('"', '')
                self.tables.setdefault(table, number)
                continue
            key = _KEY.match(stripped)
            if key:
                self.index.setdefault((table, key.group(1).strip('"')), number)

    def of(self, table: str, key: str | None = None) -> int | None:
        """The line of ``key`` in ``[table]``, else of the table's header, else None."""
        if key is not None and (table, key) in self.index:
            return self.index[(table, key)]
        return self.tables.get(table)


def toml_item(value: Any):
    """One value as a tomlkit item: tables inline (``{ a = 1 }``), tuples as arrays, a lone surrogate (an
    undecodable byte of an environment value) as U+FFFD; TypeError when TOML has no such value."""
    import tomlkit  # imported when a value is written (about 20 ms)
    import tomlkit.exceptions
    if isinstance(value, str):
        return tomlkit.string(_SURROGATE.sub('\ufffd', value))
    if isinstance(value, (list, tuple)):
        array = tomlkit.array()
        array.extend(toml_item(v) for v in value)
        return array
    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        items = [(str(k), toml_item(v)) for k, v in value.items()]
        if items:  # spaced inside the braces, as people write them
            items[0][1].trivia.indent, items[-1][1].trivia.trail = ' ', ' '
        for key, item in items:
            table.append(key, item)
        return table
    try:
        return tomlkit.item(value)
    except (tomlkit.exceptions.ConvertError, ValueError) as e:
        raise TypeError(f'no TOML value for {type(value).__name__}') from e


def toml_text(value: Any) -> str:
    """One value as TOML text (inline tables on one line); TypeError when TOML has no such value."""
    return toml_item(value).as_string()


def toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted."""
    import tomlkit
    return tomlkit.key(key).as_string()


def toml_literal(text: str) -> str:
    """``'text'`` when a TOML literal string can hold it, else a basic string."""
    import tomlkit
    import tomlkit.exceptions
    try:
        return tomlkit.string(text, literal=True).as_string()
    except tomlkit.exceptions.InvalidStringError:
        return toml_text(text)
