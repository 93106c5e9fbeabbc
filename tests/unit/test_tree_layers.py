"""A one-file edit in a large tree (package/tree.py, image/compose.code_layers): the sdist made from the last one reads
only the changed file and is byte for byte the sdist made from scratch; the code is a base layer and a delta of the
files changed since it (whiteouts for removed ones), squashed when the delta grows."""
import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

from tg_pipeline.image.compose import Layering, code_layers
from tg_pipeline.package import tree
from tg_pipeline.package.sdist import build_members, incremental_sdist, sdist_archive

ARGS = ('train', '1', 'train__1')


@pytest.fixture
def root(tmp_path):
    jobs = tmp_path / 'src' / 'jobs'
    (jobs / 'deep').mkdir(parents=True)
    (jobs / '__init__.py').write_text('')
    (jobs / 'train.py').write_text('import numpy\n\nclass Train:\n    def run(self):\n        return 1\n')
    for i in range(30):
        (jobs / 'deep' / f'm{i:02d}.py').write_text(f'VALUE = {i}\n' * 50)
    return jobs


class Build:
    """The sdist step and the code layers of build_image, as the workflow runs them, in ``tmp_path``."""

    def __init__(self, tmp_path, root):
        self.dir, self.root = tmp_path / 'build', root
        self.dir.mkdir(exist_ok=True)
        self.index, self.sdist = self.dir / 'index', self.dir / 'train__1-1.tar.gz'
        self.layering = Layering(self.index, self.dir / 'base.tar', self.dir / 'base.rec', self.dir / 'delta.tar')

    def sdist_step(self):
        name, data, index, members = incremental_sdist(*ARGS, [self.root], {'job': b'payload'}, [],
                                                       self.dir / 'pyproject', self.index, self.sdist)
        self.sdist.write_bytes(data)
        self.index.write_bytes(tree.index_bytes(index))
        return data, members

    def layers(self):
        return code_layers(self.sdist, self.layering)


def names(path: Path) -> dict:
    with tarfile.open(path) as tar:
        found = {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}
        assert len(found) == len(tar.getnames())  # an engine refuses a layer that names a path twice
        return found


def test_an_edit_reads_one_file_and_gives_the_same_bytes_as_from_scratch(tmp_path, root):
    build = Build(tmp_path, root)
    first, members = build.sdist_step()
    assert first == sdist_archive(*ARGS, [root], {'job': b'payload'})[1]
    (root / 'deep' / 'm07.py').write_text('VALUE = "edited"\n')
    second, members = build.sdist_step()
    read = sorted(m.name.split('jobs/')[1] for m in members.values() if m.source and m.data is not None)
    assert read == ['deep/m07.py']  # the other 31 files: their stat is the same, their piece is copied
    assert second == sdist_archive(*ARGS, [root], {'job': b'payload'})[1]
    with tarfile.open(fileobj=io.BytesIO(second), mode='r:gz') as tar:  # gzip members in a row: one archive
        unpacked = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    assert unpacked == build_members(*ARGS, [root], {'job': b'payload'}, [])
    assert {n for m in members.values() for n in m.imports} == {'numpy'}


def test_the_delta_layer_holds_what_changed_since_the_base(tmp_path, root):
    build = Build(tmp_path, root)
    build.sdist_step()
    [(base_id, base)] = build.layers()
    assert base_id == 'sha256:' + hashlib.sha256(base.read_bytes()).hexdigest()
    assert 'opt/tg_pipeline/train__1-1/train__1/jobs/deep/m07.py' in names(base)
    assert build.layers() == [(base_id, base)]  # nothing changed: the base alone
    (root / 'deep' / 'm07.py').write_text('VALUE = "edited"\n')
    (root / 'deep' / 'm08.py').unlink()
    (root / 'extra').mkdir()
    (root / 'extra' / 'new.py').write_text('NEW = 1\n')
    build.sdist_step()
    [(again, _), (delta_id, delta)] = build.layers()
    assert again == base_id
    found = names(delta)
    prefix = 'opt/tg_pipeline/train__1-1/train__1/jobs/'
    assert found[prefix + 'deep/m07.py'] == b'VALUE = "edited"\n' and found[prefix + 'extra/new.py'] == b'NEW = 1\n'
    assert prefix + 'deep/.wh.m08.py' in found and prefix + 'extra' in found
    assert not any(name.endswith(('m06.py', 'train.py')) for name in found)  # unchanged files stay in the base
    assert build.layers()[1][0] == delta_id  # the same files, the same delta


def test_a_delta_that_outgrows_the_base_is_squashed(tmp_path, root, monkeypatch):
    from tg_pipeline.image import compose
    monkeypatch.setattr(compose, 'SQUASH_MIN', 0)
    build = Build(tmp_path, root)
    build.sdist_step()
    [(base_id, _)] = build.layers()
    base_size = build.layering.base.stat().st_size
    for i in range(10):  # a third of the files, grown: more than 1/8 of the base
        (root / 'deep' / f'm{i:02d}.py').write_text(f'VALUE = {i + 100}\n' * 400)
    assert 10 * len('VALUE = 100\n' * 400) > base_size // 8
    build.sdist_step()
    [(squashed, base)] = build.layers()
    assert squashed != base_id and names(base)['opt/tg_pipeline/train__1-1/train__1/jobs/deep/m03.py'] == \
        b'VALUE = 103\n' * 400


def test_an_upgrade_of_the_entry_point_sends_its_modules_and_their_compiled_forms_once(tmp_path, root, monkeypatch):
    import shutil
    import sys
    from tg_pipeline.package import sdist
    runtime = tmp_path / 'runtime'
    shutil.copytree(Path(sdist.runtime_files()[0]).parent, runtime)
    monkeypatch.setattr(sdist, 'runtime_files', lambda: [runtime / name for name in sdist.RUNTIME_MODULES])
    build = Build(tmp_path, root)
    build.sdist_step()
    build.layers()
    for name in ('entry.py', 'trace.py'):  # a new tg_pipeline: two of the entry point's modules changed
        (runtime / name).write_text((runtime / name).read_text() + f'UPGRADED = {name!r}\n')
    build.sdist_step()
    [_, (_, delta)] = build.layers()
    found = names(delta)  # (each path once)
    package, tag = 'opt/tg_pipeline/train__1-1/train__1/_tg_runtime/', sys.implementation.cache_tag
    assert {n for n in found if n.endswith(('.py', '.pyc'))} == {
        package + 'entry.py', package + 'trace.py',
        f'{package}__pycache__/entry.{tag}.pyc', f'{package}__pycache__/trace.{tag}.pyc'}
    assert found[f'{package}__pycache__/entry.{tag}.pyc'][8:16] == \
        importlib.util.source_hash(found[package + 'entry.py'])  # checked against the new source
