"""What a plain (non-editable) install carries: every package of tg_pipeline, and the templates."""
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / 'pyproject.toml').read_text())['tool']['setuptools']['packages'])
    found = {'.'.join(p.parent.relative_to(REPO).parts) for p in (REPO / 'tg_pipeline').rglob('__init__.py')}
    assert found - listed == set()
    assert 'tg_pipeline.templates' in listed


def make_layout(root: Path, folders: list[str], files: list[str] = ()) -> Path:
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / 'Dockerfile.j2').write_text(f'FROM {folder}\n')
    for name in files:
        (root / name).write_text('')
    return root / 'tg_pipeline'


def test_an_installed_package_uses_its_own_templates_not_a_stray_folder_beside_it(tmp_path):
    from tg_pipeline.package.templates import search_path
    site_packages = tmp_path / 'site-packages'  # another distribution left a top-level templates/ there
    package = make_layout(site_packages, ['tg_pipeline/templates', 'templates'])
    assert search_path(package) == [package / 'templates']
    bare = make_layout(tmp_path / 'other', ['templates', 'tg_pipeline'])
    assert search_path(bare) == []  # a templates/ beside a package is ours only in a checkout


def test_a_checkout_uses_the_repository_templates(tmp_path):
    from tg_pipeline.package.templates import SEARCH, search_path
    package = make_layout(tmp_path, ['templates', 'tg_pipeline'], ['pyproject.toml'])
    assert search_path(package) == [tmp_path / 'templates']
    assert SEARCH == [REPO / 'templates']  # this checkout
