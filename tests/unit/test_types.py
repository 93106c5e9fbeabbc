"""The package type-checks (mypy, configured in pyproject.toml's [tool.mypy]), and the bugs it found, each shown."""
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import mypy_outcome_file, wait_for
from fakes.engine import FakeEngine
from fakes.runs import IMAGE, make_spec
from tg_pipeline.config.schema import RunSettings
from tg_pipeline.console import Console
from tg_pipeline.errors import PackagingError, PipelineError
from tg_pipeline.hosts.host import Host
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle, variants
from tg_pipeline.runs.hosted import HostBackend

REPO = Path(__file__).resolve().parents[2]


def test_the_package_type_checks(request):
    """``python -m mypy`` in the repository's root, as pyproject.toml configures it (the package, for Python 3.9):
    about 5 s with no .mypy_cache, under 1 s with it (it stays in the root, ignored by git). On two workers it was
    started when the tests were collected (tests/conftest.py): its outcome is read here."""
    outcome = mypy_outcome_file(request.config)
    if outcome is None:
        result = subprocess.run([sys.executable, '-m', 'mypy'], cwd=REPO, capture_output=True, text=True)
    else:
        wait_for(outcome.exists, timeout=300, what='mypy, started when the tests were collected')
        result = SimpleNamespace(**json.loads(outcome.read_text()))
        outcome.unlink()
    assert result.returncode == 0, f'mypy found type errors:\n{result.stdout}{result.stderr}'


def _legacy_save(members: dict) -> bytes:
    """A ``docker save`` archive of the legacy format: name -> bytes (a file) or str (a symbolic link to it)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def test_a_layer_saved_as_a_link_to_another_goes_as_it_is(tmp_path, monkeypatch):
    """Docker before 25 saves a layer an image has twice once, and the second as a link to the first: the transfer
    read it as a file (AttributeError on None) and now sends the link, beside the layer it points to."""
    from tg_pipeline.image.transfer import TransferStats, _archive
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    manifest = [{'Config': 'c.json', 'RepoTags': ['old:1'], 'Layers': ['a/layer.tar', 'b/layer.tar']}]
    saved = _legacy_save({'c.json': b'{}', 'a/layer.tar': b'LAYER', 'b/layer.tar': '../a/layer.tar',
                          'manifest.json': json.dumps(manifest).encode()})
    local = SimpleNamespace(api=SimpleNamespace(get_image=lambda image_id: iter([saved[:100], saved[100:]])))
    stats = TransferStats()
    out = _archive(local, 'sha256:1', 'new:2', set(), stats, lambda line: None, {})
    with tarfile.open(fileobj=out, mode='r:') as sent:
        found = {m.name: m for m in sent}
        assert found['b/layer.tar'].issym() and found['b/layer.tar'].linkname == '../a/layer.tar'
        assert sent.extractfile('a/layer.tar').read() == b'LAYER'
        assert json.loads(sent.extractfile('manifest.json').read())[0]['RepoTags'] == ['new:2']
    assert stats.layers_sent == 1


def test_a_step_after_the_build_without_its_image_record_says_so(tmp_path):
    """push, the Python API's make_container and a run on a remote read the image id build_image recorded: a record
    that is gone was a TypeError ('NoneType' object is not subscriptable), now an ERROR with the command to build."""
    from tg_pipeline.image.build import built_image_id
    (tmp_path / 'Train').mkdir()
    with pytest.raises(PipelineError) as raised:
        built_image_id(tmp_path / 'Train' / 'image.json')
    assert 'no job image is recorded' in raised.value.message and 'doit build_image:Train' in raised.value.hint
    (tmp_path / 'Train' / 'image.json').write_text('{"image_id": "sha256:1", "tag": "train:1"}')
    assert built_image_id(tmp_path / 'Train' / 'image.json') == 'sha256:1'


def test_the_result_of_a_variant_whose_record_cannot_be_read_says_so(tmp_path):
    """``doit result variant=N`` of a variant collected here whose record is of another shape, with neither its run
    folder nor its output beside it: an AttributeError on None before, now an ERROR naming the record."""
    engine = FakeEngine()
    engine.program(IMAGE, stdout=b'training\n')
    backend = HostBackend(Host('local', 'local', engine.client()), console=Console(out=io.StringIO()))
    paths = RunPaths(tmp_path / 'local')
    spec = make_spec(engine, variants=('lr=0.1', 'lr=0.01'), sweep=True, run=RunSettings(max_concurrent=2))
    result = lifecycle.run(backend, spec, paths, console=Console(out=io.StringIO(), err=io.StringIO()))
    folder = paths.run_dir(result.run_id)
    (folder / 'variant_1.json').write_text('null')
    assert not (folder / 'variant_1').exists()  # (the job wrote no file: no run folder)
    (folder / 'variant_1.out').unlink()
    scope = lifecycle.Scope(result.job, spec.project)
    with pytest.raises(PipelineError) as raised:
        variants.step('result', backend, scope, paths, result.run_id, 1)
    assert f'the record of variant 1 (lr=0.01) of sweep run {result.run_id}' in raised.value.message
    assert variants.step('result', backend, scope, paths, result.run_id, 0).exit_code == 0


# Python 3.9 (requires-python) has neither of the two names the import check read: every job failed it there
PY39 = ("import sys, importlib.metadata as m; del sys.stdlib_module_names, m.packages_distributions; "
        "sys.version_info = (3, 9, 18, 'final', 0)\n")


def test_the_import_check_works_without_the_names_python_3_10_added(tmp_path, monkeypatch):
    """``sys.stdlib_module_names`` and ``importlib.metadata.packages_distributions`` came with Python 3.10: the check's
    process read both (an AttributeError on 3.9, so no job got past sdist there), and reads its folders and the
    installed distributions instead where they are missing."""
    from tg_pipeline.job import checks
    root = tmp_path / 'checkroot'
    root.mkdir()
    (root / '__init__.py').write_text('')
    (root / 'j.py').write_text('import json\nimport requests\n\n\nclass J:\n    def run(self):\n        return 1\n')
    out = tmp_path / 'job.pkl'
    subprocess.run([sys.executable, '-c', f'import sys; sys.path.insert(0, {str(tmp_path)!r}); import pickle, '
                    f'checkroot.j; open({str(out)!r}, "wb").write(pickle.dumps(checkroot.j.J(), protocol=4))'],
                   check=True)
    popen = subprocess.Popen

    def as_on_python_3_9(command, **kwargs):
        return popen([*command[:2], PY39 + command[2], *command[3:]], **kwargs)
    monkeypatch.setattr(subprocess, 'Popen', as_on_python_3_9)
    with pytest.raises(PackagingError, match="imports 'requests'.*not declared as a dependency"):
        checks.check_imports('J', [out], [], [root], tmp_path)
    checks.check_imports('J', [out], ['requests>=0'], [root], tmp_path)


def test_the_standard_library_and_the_distributions_read_as_python_3_10_lists_them():
    from importlib import metadata
    from tg_pipeline.job.checks import read_module_distributions, stdlib_folder_names
    assert read_module_distributions() == metadata.packages_distributions()
    listed, found = set(sys.stdlib_module_names) | set(sys.builtin_module_names), stdlib_folder_names()
    assert {'json', 'os', 'email', 'asyncio', 'sqlite3', '_json', 'zlib', 'sys'} <= found
    assert not found & {'pytest', 'requests', 'docker', 'tg_pipeline', 'site-packages', '__pycache__'}
    assert len(listed - found) < len(listed) // 20  # (those of other platforms, and what this build left out)
