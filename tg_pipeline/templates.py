"""Jinja environment over the project's templates/ folder (or the copy installed with us)."""
from __future__ import annotations

import functools
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# A checkout has templates/ beside the package; an installed wheel carries them inside it.
SEARCH = [p for p in (_HERE.parent / 'templates', _HERE / 'templates') if p.is_dir()]


@functools.lru_cache(maxsize=None)
def environment(extra: tuple[str, ...] = ()):
    """``extra`` folders (a project's own templates/) come first, so a project can override ours."""
    import jinja2  # here, not at import: listing tasks needs no Jinja
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*extra, *map(str, SEARCH)]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render(name: str, extra: tuple[str, ...] = (), **values) -> str:
    return environment(extra).get_template(name).render(**values)


def files(extra: tuple[str, ...] = ()) -> list[Path]:
    """Every template file that can take part in a render: doit file_deps."""
    found = []
    for folder in [*map(Path, extra), *SEARCH]:
        found.extend(sorted(p for p in folder.glob('*.j2')))
    return found
