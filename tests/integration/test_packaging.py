"""The sdist installs with pip and runs its entry point as the image does (pip: the integration tier; the rest
of serialize + sdist without Docker: tests/unit/test_packaging.py)."""
import os
import subprocess
import sys

import pytest

from tg_pipeline.job.pickling import dumps

from unit.test_packaging import build, sources  # noqa: F401  (fixture)


@pytest.mark.slow
def test_sdist_installs_with_pip_and_runs_its_entry_point(tmp_path, sources):
    sys.path.insert(0, str(tmp_path / 'src'))
    try:
        from jobs.example_job import ExampleJob
        payload, _ = dumps(ExampleJob(['HOME']))
    finally:
        sys.path.remove(str(tmp_path / 'src'))
    sdist = build(tmp_path, 'dist', payload)
    target = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                    '--target', str(target), str(sdist)], check=True)
    result = subprocess.run([sys.executable, '-m', 'examplejob__0_0_0'], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, 'PYTHONPATH': str(target)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Job of type <class 'examplejob__0_0_0.jobs.example_job.ExampleJob'> is loaded" in out
    assert 'Variable HOME is found: True' in out
    assert out.index('Welcome to Training Grounds!') < out.index('SUCCESS') < out.index('DONE.')
