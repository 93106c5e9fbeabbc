"""mkdocs hook (mkdocs.yml `hooks:`): put the generated configuration reference into configuration.md.

The reference is rendered from the settings' own field metadata by ``tg_pipeline.config.reference.markdown()``,
so it cannot drift from the code. It is imported only when a page holds the placeholder, and a missing
function fails the build (``mkdocs build --strict`` in tests/unit/test_docs.py) instead of leaving a hole.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

PLACEHOLDER = '<!-- tg_pipeline.config.reference -->'
REPO = Path(__file__).resolve().parents[1]


def reference() -> str:
    """The Markdown of every pipeline.toml table and its keys, from the checkout this site is built from."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tg_pipeline.config.reference import markdown
    except ImportError as e:
        raise PluginError(f'the configuration reference cannot be generated: {e} (docs/hooks.py renders it '
                          f'with tg_pipeline.config.reference.markdown(), from the checkout at {REPO})') from e
    return markdown()


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the placeholder of a page with the generated reference."""
    if PLACEHOLDER not in markdown:
        return markdown
    return markdown.replace(PLACEHOLDER, reference().strip() + '\n')
