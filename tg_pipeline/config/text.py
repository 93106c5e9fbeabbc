"""The text side of the configuration: where a key sits in pipeline.toml, and the effective settings as TOML.

:class:`LineIndex` finds the line of a ``key = value`` inside a ``[table]`` (tomllib
gives values, not positions). :func:`describe` prints the effective configuration
as valid TOML, every value followed by a comment naming where it came from.
"""
from __future__ import annotations

import datetime
import math
import re
from typing import Any, Mapping

_HEADER = re.compile(r'^\[\s*([^\[\]]+?)\s*\]')
_KEY = re.compile(r'^([A-Za-z0-9_\-."]+)\s*=')
_BARE_KEY = re.compile(r'[A-Za-z0-9_-]+')
_ESCAPES = {'"': '\\"', '\\': '\\\\', '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f', '\r': '\\r'}


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


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    return '"' + ''.join(_escape(c) for c in text) + '"'


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate (undecodable bytes of an environment value)
        return '\\ufffd'
    return f'\\u{code:04x}' if code < 0x20 or code == 0x7F else char


def toml_literal(text: str) -> str:
    """``'text'`` when a TOML literal string can hold it, else a basic string."""
    plain = all(c == '\t' or (0x20 <= ord(c) != 0x7F and not 0xD800 <= ord(c) <= 0xDFFF) for c in text)
    return f"'{text}'" if plain and "'" not in text else toml_string(text)


def toml_value(value: Any) -> str:
    """One value as TOML (inline tables on one line); TypeError when TOML has no such value."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'nan'
        return ('inf' if value > 0 else '-inf') if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(toml_value(v) for v in value) + ']'
    if isinstance(value, Mapping):
        items = ', '.join(f'{toml_key(str(k))} = {toml_value(v)}' for k, v in value.items())
        return '{ ' + items + ' }' if items else '{}'
    raise TypeError(f'no TOML value for {type(value).__name__}')


