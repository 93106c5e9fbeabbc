"""What a plain (non-editable) install carries: every package of tg_pipeline, and the templates."""
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / 'pyproject.toml').read_text())['tool']['setuptools']['packages'])
    found = {'.'.join(p.parent.relative_to(REPO).parts) for p in (REPO / 'tg_pipeline').rglob('__init__.py')}
    assert found - listed == set()
    assert 'tg_pipeline.templates' in listed


def test_a_stray_templates_folder_on_the_path_is_never_taken_for_ours(tmp_path, monkeypatch):
    """Another distribution's top-level ``templates`` package is not ``tg_pipeline.templates``: the import system
    finds ours (the checkout's templates/ here, the package's own folder in a wheel: see test_ux)."""
    from tg_pipeline.package import templates
    stray = tmp_path / 'templates'
    stray.mkdir()
    (stray / '__init__.py').write_text('')
    (stray / 'Dockerfile.j2').write_text('FROM stray\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    templates.environment.cache_clear()
    try:
        assert templates.folder() == REPO / 'templates'
        assert 'FROM stray' not in templates.render('Dockerfile.j2', job='j', package='p', version='1', module='m',
                                                    base_image='b', project='x', requirements=[])
    finally:
        templates.environment.cache_clear()


def test_a_checkout_uses_the_repository_templates():
    from tg_pipeline.package import templates
    assert templates.folder() == REPO / 'templates'
    assert {p.name for p in templates.files()} == {'Dockerfile.j2', 'pyproject.toml.j2'}
