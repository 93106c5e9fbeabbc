"""templates.render_cached: the sdist's pyproject.toml is rendered by Jinja once per set of values and template."""
import json
import subprocess
import sys

from tg_pipeline.package import templates

VALUES = dict(package='train', version='1', module='train__1', roots=['jobs'], dependencies=['numpy==2.0'])


def test_the_cached_text_is_the_rendered_one_and_new_values_render_again(tmp_path):
    cache = tmp_path / 'pyproject.toml.json'
    first = templates.render_cached('pyproject.toml.j2', cache, **VALUES)
    assert first == templates.render('pyproject.toml.j2', **VALUES)
    assert json.loads(cache.read_text())['text'] == first
    changed = templates.render_cached('pyproject.toml.j2', cache, **{**VALUES, 'dependencies': ['numpy==2.1']})
    assert '"numpy==2.1"' in changed and '"numpy==2.0"' not in changed


def test_a_cached_render_does_not_import_jinja(tmp_path):
    cache = tmp_path / 'pyproject.toml.json'
    templates.render_cached('pyproject.toml.j2', cache, **VALUES)
    probe = (f'import sys; from pathlib import Path; from tg_pipeline.package import templates; '
             f'text = templates.render_cached("pyproject.toml.j2", Path({str(cache)!r}), **{VALUES!r}); '
             f'assert "jinja2" not in sys.modules; print(text)')
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == templates.render('pyproject.toml.j2', **VALUES) + '\n'


def test_an_edited_template_is_rendered_again(tmp_path, monkeypatch):
    package = tmp_path / 'edited_templates'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'pyproject.toml.j2').write_text('name = {{ module }}\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(templates, 'PACKAGE', 'edited_templates')
    cache = tmp_path / 'cache.json'
    try:
        assert templates.render_cached('pyproject.toml.j2', cache, **VALUES) == 'name = train__1\n'
        (package / 'pyproject.toml.j2').write_text('module = {{ module }}\n')
        templates.environment.cache_clear()
        assert templates.render_cached('pyproject.toml.j2', cache, **VALUES) == 'module = train__1\n'
    finally:
        templates.environment.cache_clear()
