"""The documentation: the docs site builds with `mkdocs build --strict` (a broken link, a page missing from the
nav or a failed hook fails it), and README.md stays a short first page whose quickstart is on its first screen."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / 'README.md'


def test_the_docs_build_strictly(tmp_path):
    env = {**os.environ, 'NO_MKDOCS_2_WARNING': '1'}  # mkdocs-material's banner about its successor
    result = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(tmp_path / 'site')],
                            cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f'mkdocs build --strict failed:\n{result.stdout}{result.stderr}'
    page = (tmp_path / 'site' / 'configuration' / 'index.html').read_text()
    assert 'tg_pipeline.config.reference' not in page  # the hook replaced the placeholder with the reference


def test_the_readme_is_short_with_the_quickstart_on_its_first_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f'README.md has {len(lines)} lines: move the details to docs/'
    first_screen = '\n'.join(lines[:80])
    for step in ('pip install', 'tg-pipeline init', 'doit run_local job=HelloJob', 'doit run_remote job=HelloJob',
                 '[jobs.HelloJob]', '(docs/getting-started.md)'):
        assert step in first_screen, f'{step!r} is not in the first 80 lines of README.md'


def test_the_readme_keeps_the_two_set_up_commands():
    text = README.read_text()
    assert 'bash scripts/demo.sh' in text
    assert 'bash scripts/test.sh' in text  # .ci/run calls it: the README's test command is CI's
    assert 'bash scripts/test.sh' in (REPO / '.ci' / 'run').read_text()


def test_the_readme_links_point_at_files_that_exist():
    targets = re.findall(r'\]\(([^)#]+)(?:#[^)]*)?\)', README.read_text())
    local = [t for t in targets if '://' not in t]
    assert local, 'README.md links to no page of docs/'
    assert [t for t in local if not (REPO / t).exists()] == []
