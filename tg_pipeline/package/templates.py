"""Jinja environment over our templates: the copy installed inside the package, or a checkout's templates/."""
from __future__ import annotations

import functools
from pathlib import Path

_HERE = Path(__file__).resolve().parents[1]  # the tg_pipeline package


def search_path(package_dir: Path) -> list[Path]:
    """Where our templates are, for the package folder ``package_dir``.

    An installed wheel carries them inside the package (``tg_pipeline/templates/``). A checkout (also an
    editable install) has them beside it, in the repository's ``templates/``; its parent is recognised by
    its ``pyproject.toml``, so that a ``templates`` folder some other distribution left in site-packages is
    never taken for ours."""
    inside = package_dir / 'templates'
    if inside.is_dir():
        return [inside]
    checkout = package_dir.parent
    if (checkout / 'pyproject.toml').is_file() and (checkout / 'templates').is_dir():
        return [checkout / 'templates']
    return []


SEARCH = search_path(_HERE)


@functools.lru_cache(maxsize=None)
def environment(extra: tuple[str, ...] = ()):
    """``extra`` folders (a project's own templates/) come first, so a project can override ours."""
    import jinja2  # here, not at import: listing tasks needs no Jinja
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*extra, *map(str, SEARCH)]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render(name: str, extra: tuple[str, ...] = (), **values) -> str:
    return environment(extra).get_template(name).render(**values)


def render_cached(name: str, cache: Path, **values) -> str:
    """:func:`render`, kept in ``cache`` (JSON) with the digest of the template and the values: a code edit
    renders the same text again, and reading it back spares importing Jinja (~25 ms)."""
    import hashlib
    import json
    from tg_pipeline.paths import read_json, write_if_changed
    template = next((folder / name for folder in SEARCH if (folder / name).is_file()), None)
    key = hashlib.sha256((template.read_bytes() if template else b'')
                         + json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()
    kept = read_json(cache) or {}
    if kept.get('key') == key and isinstance(kept.get('text'), str):
        return kept['text']
    text = render(name, **values)
    write_if_changed(Path(cache), json.dumps({'key': key, 'text': text}).encode())
    return text


def files(extra: tuple[str, ...] = ()) -> list[Path]:
    """Every template file that can take part in a render: doit file_deps."""
    found = []
    for folder in [*map(Path, extra), *SEARCH]:
        found.extend(sorted(p for p in folder.glob('*.j2')))
    return found
