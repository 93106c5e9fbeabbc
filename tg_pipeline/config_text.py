"""The text side of the configuration: where a key sits in pipeline.toml, and the effective settings as TOML.

:class:`LineIndex` finds the line of a ``key = value`` inside a ``[table]`` (tomllib
gives values, not positions). :func:`describe` prints the effective configuration
as valid TOML, every value followed by a comment naming where it came from.
"""
from __future__ import annotations

import dataclasses
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


def _setting(key: str, value: Any, origin: str) -> str:
    try:
        text = toml_value(value)
    except TypeError:
        text, origin = toml_string(repr(value)), f'{origin}; not a TOML value, shown as its repr'
    return f'{toml_key(key)} = {text}  # {origin}'


def describe(config, jobs=None, environ=None) -> str:
    """The effective configuration as TOML: each value with its origin, env values shown (secrets masked)."""
    from tg_pipeline import config as settings
    path = str(config.path)

    def origin(dotted: str) -> str:
        return config.origins.get(dotted, 'default').replace(path, config.path.name)

    lines = [f'# {config.path}', f'# project {config.project} (owner {config.owner})']
    for section in settings.SECTIONS:
        values = getattr(config, section)
        lines.append(f'[{section}]')
        lines += [_setting(f.name, getattr(values, f.name), origin(f'{section}.{f.name}'))
                  for f in dataclasses.fields(values)]
        if section == 'docker':
            lines.append(f'# base image used: {config.base_image}')
    for name in jobs or sorted(config.jobs):
        job = config.job(name)
        lines.append(f'[jobs.{toml_key(name)}]  # module {job.module}')
        for key in settings.JOB_KEYS:
            lines.append(_setting(key, getattr(job, key), origin(f'jobs.{name}.{key}')))
            if key == 'env':
                lines += [f'#   env.{toml_key(n)} = {toml_literal(v)}'
                          for n, v in settings.shown_env(job.env, environ).items()]
    return '\n'.join(lines)
