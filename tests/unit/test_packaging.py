"""serialize + sdist without Docker: reproducible bytes, refusals with a fix. (The sdist installed with pip and
run: tests/integration/test_packaging.py.)"""
import os
import sys
import tarfile
import threading

import pytest

from tg_pipeline.errors import PackagingError
from tg_pipeline.package.sdist import make_sdist
from tg_pipeline.job.pickling import dumps, serialize

from conftest import PROJECTS


def build(tmp_path, out, payload=b'payload'):
    roots = [tmp_path / 'src' / 'jobs']
    return make_sdist(tmp_path / out, 'examplejob', '0.0.0', 'examplejob__0_0_0', roots, {'job': payload},
                      ['requests==2.31.0'])


@pytest.fixture
def sources(tmp_path):
    import shutil
    shutil.copytree(PROJECTS / 'basic' / 'jobs', tmp_path / 'src' / 'jobs')
    return tmp_path / 'src' / 'jobs'


def test_sdist_is_byte_reproducible(tmp_path, sources):
    first = build(tmp_path, 'a').read_bytes()
    os.utime(sources / 'example_job.py', (1, 1))  # times do not matter
    (sources / '__pycache__').mkdir(exist_ok=True)
    (sources / '__pycache__' / 'x.pyc').write_bytes(b'junk')  # caches are not packaged
    assert build(tmp_path, 'b').read_bytes() == first
    assert build(tmp_path, 'c', payload=b'other').read_bytes() != first


def test_sdist_layout(tmp_path, sources):
    with tarfile.open(build(tmp_path, 'a')) as tar:
        names = tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {946684800}
        pkg_info = tar.extractfile('examplejob__0_0_0-0.0.0/PKG-INFO').read().decode()
    assert 'examplejob__0_0_0-0.0.0/examplejob__0_0_0/__init__.py' in names
    assert 'examplejob__0_0_0-0.0.0/examplejob__0_0_0/__main__.py' in names
    assert 'examplejob__0_0_0-0.0.0/examplejob__0_0_0/resources/job.pkl' in names
    assert 'examplejob__0_0_0-0.0.0/examplejob__0_0_0/jobs/example_job.py' in names
    assert 'Requires-Dist: requests==2.31.0' in pkg_info
    assert not any('__pycache__' in n for n in names)


def test_unchanged_sdist_keeps_its_mtime(tmp_path, sources):
    path = build(tmp_path, 'a')
    os.utime(path, (1000, 1000))
    build(tmp_path, 'a')
    assert path.stat().st_mtime == 1000


class Holder:
    def __init__(self, **attributes):
        self.__dict__.update(attributes)


@pytest.mark.parametrize('make, path, kind', [
    (lambda tmp: Holder(lock=threading.Lock()), 'job.lock', '_thread.lock'),
    (lambda tmp: Holder(config={'files': [open(tmp / 'f.txt', 'w')]}), "job.config['files'][0]",
     '_io.TextIOWrapper'),
    (lambda tmp: Holder(inner=Holder(sock=__import__('socket').socket())), 'job.inner.sock', 'socket.socket'),
])
def test_unpicklable_job_names_the_attribute_path(tmp_path, make, path, kind):
    job = make(tmp_path)
    with pytest.raises(PackagingError) as info:
        dumps(job)
    assert f'the job cannot be pickled: {path} is a {kind}' in info.value.message
    assert 'create open files, locks, connections and clients inside run()' in info.value.hint


def test_lambda_attributes_travel_by_value():
    import pickle
    data, _ = dumps(Holder(transform=lambda x: x * 3))
    assert pickle.loads(data).transform(14) == 42


def test_class_outside_source_roots_is_refused(tmp_path):
    outside = tmp_path / 'elsewhere'
    outside.mkdir()
    (outside / 'stray_module.py').write_text('class StrayJob:\n    def run(self):\n        return 1\n')
    sys.path.insert(0, str(outside))
    try:
        import stray_module
        with pytest.raises(PackagingError) as info:
            serialize(stray_module.StrayJob(), tmp_path / 'payload.pkl', [tmp_path / 'src' / 'jobs'])
    finally:
        sys.path.remove(str(outside))
        sys.modules.pop('stray_module', None)
    assert "module 'stray_module'" in info.value.message
    assert 'add its folder' in info.value.hint and 'source_roots' in info.value.hint
    assert not (tmp_path / 'payload.pkl').exists()


def test_a_class_of_a_package_outside_the_roots_names_the_packages_folder(tmp_path):
    """The fix names the top-level package's folder (what a source root is), not the module's own folder."""
    (tmp_path / 'lib' / 'sub').mkdir(parents=True)
    (tmp_path / 'lib' / '__init__.py').write_text('')
    (tmp_path / 'lib' / 'sub' / '__init__.py').write_text('')
    (tmp_path / 'lib' / 'sub' / 'deep.py').write_text('class DeepJob:\n    def run(self):\n        return 1\n')
    sys.path.insert(0, str(tmp_path))
    try:
        from lib.sub.deep import DeepJob
        with pytest.raises(PackagingError) as info:
            serialize(DeepJob(), tmp_path / 'payload.pkl', [tmp_path / 'jobs'])
    finally:
        sys.path.remove(str(tmp_path))
        for name in ('lib', 'lib.sub', 'lib.sub.deep'):
            sys.modules.pop(name, None)
    assert info.value.hint.startswith(f'add its folder {tmp_path / "lib"} to source_roots in [package]')


def test_the_python_api_refuses_a_sibling_module_outside_its_source_roots(tmp_path, monkeypatch):
    """The API's source roots are the packages the job's classes come from: a module they import from the folder
    beside them would be missing in the container, and the TIP is the API's own setting."""
    import uuid
    from tg_pipeline import Packaging
    name = f'apiroots_{uuid.uuid4().hex[:8]}'
    src = tmp_path / 'src'
    (src / name).mkdir(parents=True)
    (src / name / '__init__.py').write_text('')
    (src / f'{name}_helper.py').write_text('def shout(text):\n    return text.upper()\n')
    (src / name / 'jobs.py').write_text(f'from {name}_helper import shout\n\n\nclass Job:\n'
                                        f'    def run(self):\n        return shout("x")\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(src))
    job = __import__(f'{name}.jobs', fromlist=['Job']).Job()
    packaging = Packaging('apiroots', '0.0.1', dict(job=job))
    packaging.build_dir = str(tmp_path / 'build')
    with pytest.raises(PackagingError) as info:
        packaging.make_package()
    assert f"job apiroots imports '{name}_helper' (in {src / name / 'jobs.py'}:1) from {src / name}_helper.py" \
        in info.value.message
    assert info.value.hint == (f'move {name}_helper.py into a folder of its own, src/{name}_helper/__init__.py, and '
                               f'add that folder to packaging.source_roots: packaging.source_roots = ["src/{name}", '
                               f'"src/{name}_helper"] (or move it into a source root and import it from there)')
