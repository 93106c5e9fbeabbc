"""Our Jinja templates (the Dockerfile, the sdist's pyproject.toml, the files ``tg-pipeline init`` writes): rendered
with jinja2's :class:`~jinja2.PackageLoader` from the package ``tg_pipeline.templates``.

That package is the repository's ``templates/`` folder, mapped into ``tg_pipeline`` by pyproject's ``package-dir``:
the import system finds it the same way in a checkout, an editable install and an installed wheel, and never takes
some other distribution's ``templates`` folder for ours. A project's own template folders (``extra``) come first, so
a project can override ours. Jinja is imported only to render: a code edit reads its pyproject.toml back from
:func:`render_cached` without it.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
from pathlib import Path

PACKAGE = 'tg_pipeline.templates'


def folder() -> Path:
    """Where our templates are, as the import system finds the package (no Jinja needed)."""
    return Path(str(importlib.resources.files(PACKAGE)))


@functools.lru_cache(maxsize=None)
def environment(extra: tuple[str, ...] = (), package: str = PACKAGE):
    """A project's ``extra`` folders first, then ours."""
    import jinja2  # here, not at import: listing tasks needs no Jinja
    loaders = [jinja2.FileSystemLoader(list(extra))] if extra else []
    return jinja2.Environment(loader=jinja2.ChoiceLoader([*loaders, jinja2.PackageLoader(package, '.')]),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render(name: str, extra: tuple[str, ...] = (), **values) -> str:
    return environment(extra, PACKAGE).get_template(name).render(**values)


def render_cached(name: str, cache: Path, **values) -> str:
    """:func:`render`, kept in ``cache`` (JSON) with the digest of the template and the values: a code edit
    renders the same text again, and reading it back spares importing Jinja (~25 ms)."""
    from tg_pipeline.paths import read_json, write_if_changed
    template = folder() / name
    key = hashlib.sha256((template.read_bytes() if template.is_file() else b'')
                         + json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()
    kept = read_json(cache)
    if isinstance(kept, dict) and kept.get('key') == key and isinstance(kept.get('text'), str):
        return kept['text']
    text = render(name, **values)
    write_if_changed(Path(cache), json.dumps({'key': key, 'text': text}).encode())
    return text


def files(extra: tuple[str, ...] = ()) -> list[Path]:
    """Every template file that can take part in a render: doit file_deps."""
    found = []
    for place in [*map(Path, extra), folder()]:
        found.extend(sorted(p for p in place.glob('*.j2')))
    return found
