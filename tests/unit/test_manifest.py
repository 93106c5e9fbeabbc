"""The source roots' manifest (package/manifest.py): the one file the build steps depend on for the sources."""
import os

from conftest import ran
from tg_pipeline import paths
from tg_pipeline.package import manifest


def tree(root, modules=30):
    jobs = root / 'jobs'
    (jobs / 'sub').mkdir(parents=True)
    (jobs / '__init__.py').write_text('')
    for i in range(modules):
        (jobs / 'sub' / f'm{i}.py').write_text(f'X = {i}\n')
    (jobs / '__pycache__').mkdir()
    (jobs / '__pycache__' / 'm0.cpython-311.pyc').write_bytes(b'junk')  # never packaged: never listed
    return [jobs]


def test_the_manifest_changes_with_the_content_only(tmp_path):
    roots = tree(tmp_path)
    path = manifest.refresh(tmp_path / 'build', roots)
    first, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert len(manifest.listed(str(path))) == 31 and not any('__pycache__' in f for f in manifest.listed(str(path)))
    module = roots[0] / 'sub' / 'm3.py'
    os.utime(module, ns=(1, 1))  # a touch, a checkout back and forth: the same bytes
    assert manifest.refresh(tmp_path / 'build', roots) == path
    assert path.read_bytes() == first and path.stat().st_mtime_ns == mtime
    module.write_text('X = "edited"\n')
    edited = manifest.refresh(tmp_path / 'build', roots).read_bytes()
    assert edited != first and edited.count(b'\n') == 31
    module.write_text('X = 3\n')  # the edit undone: the manifest of before
    assert manifest.refresh(tmp_path / 'build', roots).read_bytes() == first
    (roots[0] / 'sub' / 'new.py').write_text('')
    assert str(roots[0] / 'sub' / 'new.py') in manifest.listed(str(manifest.refresh(tmp_path / 'build', roots)))


def test_a_hash_is_taken_again_only_when_the_stat_moved(tmp_path, monkeypatch):
    roots = tree(tmp_path)
    manifest.refresh(tmp_path / 'build', roots)
    read = []
    real = paths.file_sha256
    monkeypatch.setattr(paths, 'file_sha256', lambda path: read.append(path) or real(path))
    manifest.refresh(tmp_path / 'build', roots)
    assert read == []
    (roots[0] / 'sub' / 'm7.py').write_text('X = "seven"\n')
    manifest.refresh(tmp_path / 'build', roots)
    assert read == [str(roots[0] / 'sub' / 'm7.py')]


def test_a_broken_cache_costs_hashes_not_a_wrong_manifest(tmp_path):
    roots = tree(tmp_path)
    path = manifest.refresh(tmp_path / 'build', roots)
    first = path.read_bytes()
    for junk in (b'', b'\x00not marshal', b'[1, 2]'):
        path.with_suffix('.marshal').write_bytes(junk)
        assert manifest.refresh(tmp_path / 'build', roots).read_bytes() == first


def test_other_roots_have_a_manifest_of_their_own(tmp_path):
    roots = tree(tmp_path)
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'a.py').write_text('')
    assert manifest.refresh(tmp_path / 'build', roots) != manifest.refresh(tmp_path / 'build', [*roots, other])


def test_a_touch_rebuilds_nothing_and_an_edit_rebuilds_the_sdist(project):
    project.doit('sdist', 'job=ResultJob')
    source = project.path('jobs/result_job.py')
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10 ** 9))
    touched = project.doit('sdist', 'job=ResultJob').stdout
    assert not ran(touched, 'serialize:ResultJob') and not ran(touched, 'sdist:ResultJob')
    with open(source, 'a') as file:
        file.write('# an edit\n')
    edited = project.doit('sdist', 'job=ResultJob').stdout
    assert ran(edited, 'sdist:ResultJob')


def test_a_doit_command_freezes_what_its_dodo_load_made(project, monkeypatch):
    """The collector does not walk the loaded modules, configuration and tasks at every step (big trees allocate
    thousands of index entries per step)."""
    import gc
    import sys
    from tg_pipeline.workflow.main import dodo_tasks
    monkeypatch.setattr(sys, 'argv', ['doit', 'list'])
    monkeypatch.chdir(project.root)
    before = gc.get_freeze_count()
    try:
        tasks = dodo_tasks(str(project.path('dodo.py')))
        assert 'task_sdist' in tasks and gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
