"""A return value this Python cannot load (its class's module is not installed here, or differs): the run
still counts as a success, ``report`` prints one line (what it holds, size, path) and a TIP, and
``RunResult.value`` raises ResultNotLoadable naming the module and the file (no Docker)."""
import io
import json
import pickle

import pytest

from tg_pipeline.console import Console
from tg_pipeline.errors import PipelineError, ResultNotLoadable
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs.model import RunResult
from tg_pipeline.runs.lifecycle import report
from tg_pipeline.runs.records import saved_result

MISSING = 'tg_test_not_installed_here'  # a module no environment has
HELD = f'(c{MISSING}.sub\nThing\n)Rl.'.encode()  # a list holding an instance of tg_test_not_installed_here.sub.Thing


def run_with(tmp_path, data: bytes, module: str = 'job__1_0') -> RunResult:
    folder = tmp_path / 'run'
    folder.mkdir(exist_ok=True)
    (folder / 'result.pkl').write_bytes(data)
    return RunResult(run_id='20260101-000000-000000-abcdef', where='local', host='local', job='J', module=module,
                     exit_code=0, run_dir=folder)


def test_a_value_needing_a_module_missing_here_is_a_clear_error(tmp_path):
    result = run_with(tmp_path, HELD)
    assert result.ok
    with pytest.raises(ResultNotLoadable) as info:
        result.value
    error = info.value
    assert isinstance(error, PipelineError) and not isinstance(error, ModuleNotFoundError)
    path = tmp_path / 'run' / 'result.pkl'
    assert (error.module, error.needs, error.path, error.size) == (MISSING, f'{MISSING}.sub.Thing', path, len(HELD))
    assert error.render() == (
        f'ERROR: the return value holds a {MISSING}.sub.Thing that cannot be loaded here (ModuleNotFoundError: No '
        f"module named '{MISSING}'): {len(HELD)} bytes in {path}\n"
        f"TIP: pip install {MISSING} (the package that provides the module '{MISSING}') here to load it; the image "
        'has it')


def test_report_prints_one_line_and_the_tip_and_the_run_still_counts(tmp_path):
    out = io.StringIO()
    report(run_with(tmp_path, HELD), Console(out=out))
    lines = out.getvalue().splitlines()
    assert lines[0] == (f'Result: the value holds a {MISSING}.sub.Thing that cannot be loaded here '
                        f"(ModuleNotFoundError: No module named '{MISSING}'): {len(HELD)} bytes in "
                        f"{tmp_path / 'run' / 'result.pkl'}")
    assert lines[1].startswith(f'TIP: pip install {MISSING} ')
    assert lines[2].startswith('Run 20260101-000000-000000-abcdef (local): exit 0; return value, output folder and logs in ')


def test_a_class_the_module_here_lacks_asks_for_the_images_version(tmp_path):
    with pytest.raises(ResultNotLoadable) as info:
        run_with(tmp_path, b'cjson\nNoSuchClass\n)R.').value
    assert info.value.needs == 'json.NoSuchClass' and 'AttributeError' in info.value.message
    assert info.value.hint == 'install here the version of json that the image has (json.NoSuchClass differs here)'


def test_a_class_of_the_source_roots_asks_for_the_project_folder(tmp_path):
    with pytest.raises(ResultNotLoadable) as info:
        run_with(tmp_path, b'cjob__1_0.tgtestroot.models\nModel\n)R.').value
    assert info.value.needs == 'tgtestroot.models.Model'
    assert info.value.hint.startswith("tgtestroot.models.Model is a class of your source roots: load the value "
                                      "where 'tgtestroot' imports")


def test_values_that_load_are_unchanged(tmp_path):
    assert run_with(tmp_path, pickle.dumps({'n': 1})).value == {'n': 1}


def test_a_swarm_variant_whose_value_does_not_load_is_reported_and_raises(tmp_path):
    paths = RunPaths(tmp_path / 'runs')
    run_id = 'r1'
    for index, data in enumerate([pickle.dumps(7), HELD]):
        folder = paths.run_dir(run_id) / f'variant_{index}'
        folder.mkdir(parents=True)
        (folder / 'result.pkl').write_bytes(data)
    variants = [{'variant': i, 'label': f'v={i}', 'state': 'complete', 'exit_code': 0, 'ok': True,
                 'run_dir': str(paths.run_dir(run_id) / f'variant_{i}')} for i in range(2)]
    paths.write_record(run_id, {'job': 'J', 'module': 'job__1_0', 'variants': variants})
    result = saved_result(paths, run_id, 'swarm', 'swarm local')
    out = io.StringIO()
    report(result, Console(out=out))
    text = out.getvalue()
    assert 'variant 0 (v=0): complete, exit 0, result 7' in text
    assert f'variant 1 (v=1): complete, exit 0, result the value holds a {MISSING}.sub.Thing that cannot be ' in text
    assert text.count(f'TIP: pip install {MISSING} ') == 1
    with pytest.raises(ResultNotLoadable):
        result.value
    json.dumps(paths.read_record(run_id))  # the record stays plain JSON
