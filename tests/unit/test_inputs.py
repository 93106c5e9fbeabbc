"""What a user's own code meets, with no engine: absolute imports of the project's own packages load in the job
package as in the container (the sdist is unpacked and run as the image runs it: ``python -m MODULE`` with the
sdist's folder on PYTHONPATH). (Two versions in one process, the engines, return values that cannot load
here: tests/integration/test_inputs.py.)
"""
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

from conftest import REPO

LOUD = {'shout': 'HELLO!', 'whisper': 'hello...', 'banner': '== HELLO! ==', 'same_objects': True}


def sdist_of(project, version='0.0.1', job='Loud') -> Path:
    """The job's sdist for ``version``, kept in dist/ (the build folder holds the latest version's only)."""
    import shutil
    project.doit('sdist', f'job={job}', f'version={version}')
    built = project.path(f'build/{job}/context/{job.lower()}__{version.replace(".", "_")}-{version}.tar.gz')
    project.path('dist').mkdir(exist_ok=True)
    return Path(shutil.copy(built, project.path('dist')))


def unpacked(sdist: Path, into: Path) -> Path:
    """The sdist unpacked as the image's ADD does; the folder the image puts on PYTHONPATH."""
    with tarfile.open(sdist) as tar:
        tar.extractall(into, **({'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}))
    return into / sdist.name[:-len('.tar.gz')]


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """A fresh Python process with nothing of this one's modules or sys.path. tg_pipeline is imported from this
    checkout, whose folder then leaves sys.path again: its own jobs/ (the example jobs) would have the name."""
    environ = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    head = f'import sys; sys.path.insert(0, {str(REPO)!r}); import tg_pipeline.api; sys.path.remove({str(REPO)!r})\n'
    return subprocess.run([sys.executable, '-c', head + textwrap.dedent(code)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=300)


def test_absolute_imports_load_in_the_job_package_as_in_the_container(project_factory, tmp_path):
    project = project_factory('absolute_imports')
    folder = unpacked(sdist_of(project), tmp_path / 'opt')
    run_dir = tmp_path / 'run'
    environ = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run([sys.executable, '-m', 'loud__0_0_1'], cwd=tmp_path, capture_output=True, text=True,
                            env={**environ, 'PYTHONPATH': str(folder), 'TG_PIPELINE_RUN_DIR': str(run_dir)})
    assert result.returncode == 0, result.stdout + result.stderr
    value = pickle.loads((run_dir / 'result.pkl').read_bytes())
    assert {k: value[k] for k in LOUD} == LOUD
    assert value['util'] == 'loud__0_0_1.jobs.util'  # one module, under both names


def test_both_names_are_the_same_module_and_pickles_of_either_load(project_factory, tmp_path):
    project = project_factory('absolute_imports')
    folder = unpacked(sdist_of(project), tmp_path / 'opt')
    result = python(f'''
        import pickle, sys
        sys.path.insert(0, {str(folder)!r})
        from loud__0_0_1 import EntryPoint
        job = EntryPoint().load_resource('job')
        import jobs.util, loud__0_0_1.jobs.util as real
        assert jobs.util is real and sys.modules['jobs'] is sys.modules['loud__0_0_1.jobs']
        assert jobs.util.__spec__.name == 'loud__0_0_1.jobs.util'  # the module keeps its own spec
        assert pickle.loads(b'cjobs.util\\nshout\\n.') is real.shout  # a pickle naming the short form
        assert pickle.loads(pickle.dumps(job)).run()['shout'] == 'HELLO!'
        print('ok', type(job).__module__)
        ''', tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == 'ok loud__0_0_1.jobs.loud'


def test_tabulate_is_in_the_image_only():
    """The premise of the tests below: tabulate (a dependency of the foreign_result job) is not installed here."""
    import importlib.util
    assert importlib.util.find_spec('tabulate') is None
