"""The Python API without an engine: a job class outside the source roots is refused before anything is built.
(The API on the engines, notebooks and versions side by side: tests/integration/test_api.py.)"""
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tg_pipeline import Containering, Packaging, SSHDockerConfig, SSHDockerOptions, SSHLocalExecutor
from tg_pipeline.errors import PackagingError


def job_package(tmp_path, code: str) -> tuple[str, Path]:
    """A uniquely named package under tmp_path/src holding ``code`` as module ``jobs``; imported."""
    name = f'apijobs_{uuid.uuid4().hex[:8]}'
    root = tmp_path / 'src' / name
    root.mkdir(parents=True)
    (root / '__init__.py').write_text('')
    (root / 'jobs.py').write_text(textwrap.dedent(code))
    sys.path.insert(0, str(root.parent))
    return name, root


def config_for(job, name, tmp_path, version='0.0.0', **options):
    packaging = Packaging(name, version, dict(job=job))
    packaging.build_dir = str(tmp_path / 'build')
    containering = Containering.from_packaging(packaging)
    containering.silent = True
    containering.image_name = 'tgtest-' + name
    return SSHDockerConfig(packaging, containering, SSHDockerOptions(**options))


def test_class_outside_the_source_roots_is_refused_before_any_build(tmp_path):
    name, root = job_package(tmp_path, '''
        class Stray:
            def run(self):
                return 1
        ''')
    module = __import__(f'{name}.jobs', fromlist=['Stray'])
    (tmp_path / 'roots' / 'jobs').mkdir(parents=True)
    config = config_for(module.Stray(), 'stray', tmp_path)
    config.packaging.source_roots = [str(tmp_path / 'roots' / 'jobs')]
    with pytest.raises(PackagingError) as info:
        SSHLocalExecutor(config).execute()
    assert f"module '{name}.jobs'" in info.value.message
    assert 'add its folder' in info.value.hint and 'source_roots' in info.value.hint
    assert not (tmp_path / 'build').exists()  # nothing was built
