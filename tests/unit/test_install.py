"""What a plain (non-editable) install carries: every package of tg_pipeline, and the templates."""
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / 'pyproject.toml').read_text())['tool']['setuptools']['packages'])
    found = {'.'.join(p.parent.relative_to(REPO).parts) for p in (REPO / 'tg_pipeline').rglob('__init__.py')}
    assert found - listed == set()
    assert 'tg_pipeline.templates' in listed
