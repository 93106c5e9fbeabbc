"""The import check before a build (``check_imports``): the payload loads in a fresh Python where installed but
undeclared distributions refuse to import; packaging, which the check itself uses, is judged like any other."""
import subprocess
import sys

import pytest

from tg_pipeline.errors import PackagingError
from tg_pipeline.job.checks import check_imports


def payload(tmp_path, imports: str):
    """A source root ``checkroot`` whose job module imports ``imports``, and that job pickled by reference."""
    root = tmp_path / 'checkroot'
    root.mkdir()
    (root / '__init__.py').write_text('')
    (root / 'helper.py').write_text('import csv\n')
    (root / 'j.py').write_text(imports + '\n\n\nclass J:\n    def run(self):\n        return 1\n')
    out = tmp_path / 'job.pkl'
    subprocess.run([sys.executable, '-c', f'import sys; sys.path.insert(0, {str(tmp_path)!r}); import pickle, '
                    f'checkroot.j; open({str(out)!r}, "wb").write(pickle.dumps(checkroot.j.J(), protocol=4))'],
                   check=True)
    return root, out


@pytest.mark.parametrize('module, distribution', [('requests', 'requests'), ('packaging', 'packaging')])
def test_an_installed_module_not_declared_is_refused_and_declared_it_loads(tmp_path, module, distribution):
    root, out = payload(tmp_path, f'import {module}')
    with pytest.raises(PackagingError, match='not declared as a dependency'):
        check_imports('J', [out], [], [root], tmp_path)
    check_imports('J', [out], [f'{distribution}>=0'], [root], tmp_path)


def test_a_job_of_the_standard_library_and_its_roots_only_loads(tmp_path):
    root, out = payload(tmp_path, 'import json\nfrom . import helper')
    check_imports('J', [out], [], [root], tmp_path)


def test_the_check_runs_beside_other_work_and_its_error_comes_at_finish(tmp_path):
    """sdist starts the check, makes the archive meanwhile, then waits: the refusal is raised by finish()."""
    from tg_pipeline.job.checks import start_import_check
    root, out = payload(tmp_path, 'import requests')
    check = start_import_check('J', [out], [], [root], tmp_path)
    assert check.process.pid > 0  # started, not yet waited for
    with pytest.raises(PackagingError, match="imports 'requests'"):
        check.finish()
    cancelled = start_import_check('J', [out], [], [root], tmp_path)
    cancelled.cancel()
    assert cancelled.process.returncode is not None


def test_a_payload_pickled_by_cloudpickle_loads_without_reading_the_installed_distributions(tmp_path):
    """cloudpickle is in every image: importing it is allowed before (and without) the distribution scan, which
    then never runs for a job of the standard library and its roots (importlib.metadata stays unimported)."""
    root = tmp_path / 'checkroot'
    root.mkdir()
    (root / '__init__.py').write_text('')
    out = tmp_path / 'job.pkl'
    subprocess.run([sys.executable, '-c', 'import cloudpickle; f = lambda: 1; '
                    f'open({str(out)!r}, "wb").write(cloudpickle.dumps(f))'], check=True)
    from tg_pipeline.job.checks import start_import_check
    check = start_import_check('J', [out], [], [root], tmp_path)
    script = check.process.args[2]
    check.finish()
    probe = script + '\nimport sys; assert "importlib.metadata" not in sys.modules, "distributions were read"\n'
    result = subprocess.run([sys.executable, '-c', probe, *check.process.args[3:]], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_imported_names_are_the_top_level_modules_of_every_import_statement():
    from tg_pipeline.job.checks import imported_names
    source = (b'import os, numpy.linalg as la\nfrom torch.nn import Module\nfrom . import helper\n'
              b'def f():\n    import pandas  # late\n    from .sub import x\nprint("import nothing")\n'
              b'x = 1; import json\n')
    assert imported_names(source) == {'os', 'numpy', 'torch', 'pandas'}  # `x = 1; import json`: not at a line start


def test_the_check_runs_again_only_when_what_it_depends_on_changes(tmp_path):
    """An edit inside a function keeps the key (the check does not run again: torch is not loaded again at every
    edit); a new import, a new declared dependency, a payload naming another installed module or a module beside
    the roots changes it."""
    from tg_pipeline.job.checks import import_check_key
    root, out = payload(tmp_path, 'import json')
    project = [str(tmp_path)]
    key = import_check_key([out], [], [root], project)
    source = root / 'j.py'
    source.write_text(source.read_text().replace('return 1', 'return 2'))
    assert import_check_key([out], [], [root], project) == key
    source.write_text('import requests\n' + source.read_text())
    new_import = import_check_key([out], [], [root], project)
    assert new_import != key
    assert import_check_key([out], ['requests'], [root], project) != new_import
    same_names = tmp_path / 'same.pkl'  # other bytes, the same modules named: the same key
    same_names.write_bytes(out.read_bytes().replace(b'checkroot', b'checkroot', 1) + b'.')
    assert import_check_key([same_names], [], [root], project) == new_import
    import pickle
    from packaging.version import Version
    installed = tmp_path / 'installed.pkl'  # a payload holding an object of an installed package
    installed.write_bytes(pickle.dumps(Version('1.0')))
    assert import_check_key([installed], [], [root], project) != import_check_key([same_names], [], [root], project)
    (tmp_path / 'helpers.py').write_text('')
    assert import_check_key([out], [], [root], project) != import_check_key([out], [], [root], [str(root)])


def test_a_passed_check_is_recorded_and_not_run_again_and_a_failed_one_is_not_recorded(tmp_path):
    from tg_pipeline.job.checks import start_import_check
    root, out = payload(tmp_path, 'import json')
    record = tmp_path / 'import_check.json'
    first = start_import_check('J', [out], [], [root], tmp_path, record=record)
    assert first.process is not None
    first.finish()
    assert record.exists()
    again = start_import_check('J', [out], [], [root], tmp_path, record=record)
    assert again.process is None  # same inputs: nothing started
    again.finish()
    (root / 'j.py').write_text('import requests\n' + (root / 'j.py').read_text())
    changed = start_import_check('J', [out], [], [root], tmp_path, record=record)
    assert changed.process is not None
    with pytest.raises(PackagingError, match="imports 'requests'"):
        changed.finish()
    assert start_import_check('J', [out], [], [root], tmp_path, record=record).process is not None  # not recorded
