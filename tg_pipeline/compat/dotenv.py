"""The parser of python-dotenv (``python-dotenv>=1.0,<2``), see :mod:`tg_pipeline.compat`: its public
``dotenv_values`` skips a line it cannot parse (with a warning) and expands ``${VAR}``; ``dotenv.parser.parse_stream``
(no documented API) gives every line, a bad one marked, with its line number, and expands nothing."""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional, TextIO


class Binding(NamedTuple):
    name: Optional[str]  # None: a comment or a blank line, or a bad line (``bad``)
    value: Optional[str]  # None: ``NAME`` without ``=``
    line: int  # of its name (a binding's text starts with the blank lines before it)
    bad: bool


def bindings(stream: TextIO) -> Iterator[Binding]:
    """The bindings of a ``.env`` text, values as written (no ``${VAR}`` expansion)."""
    import dotenv.parser
    for found in dotenv.parser.parse_stream(stream):
        text = found.original.string
        blank = text[:len(text) - len(text.lstrip())].count('\n')
        yield Binding(found.key, found.value, found.original.line + blank, found.error)
