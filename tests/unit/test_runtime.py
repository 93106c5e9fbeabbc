"""The container protocol without Docker: the entry point run on job packages built in tmp_path."""
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest

from tg_pipeline.errors import PackagingError
from tg_pipeline.package import sdist
from tg_pipeline.runtime import entry, protocol

REPO = Path(__file__).resolve().parents[2]
JOBS = '''
import os
import sys


class Returns:
    def __init__(self, value):
        self.value = value

    def run(self):
        return self.value


class WritesOutput:
    def run(self):
        folder = os.environ['TG_PIPELINE_OUTPUT']
        with open(os.path.join(folder, 'hello.txt'), 'w') as file:
            file.write('hello')
        return folder


class Exits:
    def __init__(self, *code):
        self.code = code

    def run(self):
        sys.exit(*self.code)


class Raises:
    def __init__(self, error=ValueError):
        self.error = error

    def run(self):
        raise self.error('boom in the job')


class ReturnsLambda:
    def run(self):
        return lambda x: x * 3


def answer():
    return 42
'''
LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})? INFO: (.*)$')


@pytest.fixture(scope='session')
def jobs(tmp_path_factory):
    """The job classes, importable here as ``rtjobs.tasks`` (the source root ``rtjobs``)."""
    src = tmp_path_factory.mktemp('src')
    (src / 'rtjobs').mkdir()
    (src / 'rtjobs' / '__init__.py').write_text('')
    (src / 'rtjobs' / 'tasks.py').write_text(JOBS)
    sys.path.insert(0, str(src))
    import rtjobs.tasks
    yield rtjobs.tasks
    sys.path.remove(str(src))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """main() exports the output folder to os.environ: undone after each test."""
    for name in (protocol.ENV_OUTPUT, protocol.ENV_RUN_DIR, protocol.ENV_SLOT, protocol.ENV_SEND_BACK):
        monkeypatch.setenv(name, 'x')
        monkeypatch.delenv(name)


class Package:
    def __init__(self, top: Path, module: str):
        self.top, self.module = top, module
        self.dir = top / module


@pytest.fixture
def make_package(tmp_path, jobs):
    """Build the sdist's files (as the sdist task does) and unpack them: ``make_package(job=obj, ...)``."""
    made = []

    def make(**payload):
        module = 'rtjob__' + uuid.uuid4().hex[:8]
        resources = {name: pickle.dumps(value, protocol=4) for name, value in payload.items()}
        members = sdist.build_members('rtjob', '1.0', module, [Path(jobs.__file__).parent], resources, [])
        site = tmp_path / 'site' / module
        for name, data in members.items():
            (site / name).parent.mkdir(parents=True, exist_ok=True)
            (site / name).write_bytes(data)
        package = Package(site / sdist.sdist_name(module, '1.0'), module)
        sys.path.insert(0, str(package.top))
        made.append(package)
        return package

    yield make
    for package in made:
        sys.path.remove(str(package.top))
        for name in [m for m in sys.modules if m == package.module or m.startswith(package.module + '.')]:
            del sys.modules[name]


def run_main(package, capsys, run_dir=None, **environ):
    if run_dir:
        environ[protocol.ENV_RUN_DIR] = str(run_dir)
    code = entry.main(package_dir=package.dir, environ=environ)
    out, err = capsys.readouterr()
    return code, out, err


def messages(out: str) -> list[str]:
    """The entry point's log lines (timestamp format checked), without marker lines."""
    found = []
    for line in out.splitlines():
        if protocol.parse_marker(line) is None:
            match = LOG_LINE.match(line)
            assert match, f'not a log line: {line!r}'
            found.append(match.group(2))
    return found


def exit_record(run_dir: Path) -> dict:
    return json.loads((run_dir / protocol.EXIT_FILE).read_text())


def result(run_dir: Path):
    with open(run_dir / protocol.RESULT_FILE, 'rb') as file:
        return pickle.load(file)


def test_success_keeps_result_exit_and_log_lines(make_package, jobs, tmp_path, capsys):
    package = make_package(job=jobs.Returns({'accuracy': 0.9}))
    run_dir = tmp_path / 'run'
    code, out, err = run_main(package, capsys, run_dir)
    assert code == 0 and err == ''
    assert messages(out) == [
        'Welcome to Training Grounds!', 'Loading job',
        f"Job of type <class '{package.module}.rtjobs.tasks.Returns'> is loaded", 'Job has `run` attribute',
        'Job has exited successfully', 'DONE. Exiting Training Grounds.']
    assert result(run_dir) == {'accuracy': 0.9}
    assert exit_record(run_dir) == {'exit_code': 0, 'reason': 'ok'}
    assert (run_dir / protocol.EXIT_FILE).read_bytes() == b'{"exit_code": 0, "reason": "ok"}'
    assert not (run_dir / protocol.TRACEBACK_FILE).exists()


def test_output_folder_is_made_and_given_to_the_job(make_package, jobs, tmp_path, capsys):
    package = make_package(job=jobs.WritesOutput())
    run_dir = tmp_path / 'run'
    code, _, _ = run_main(package, capsys, run_dir)
    output = run_dir / protocol.OUTPUT_DIR
    assert code == 0 and result(run_dir) == str(output)
    assert (output / 'hello.txt').read_text() == 'hello'
    assert os.environ[protocol.ENV_OUTPUT] == str(output)


def test_output_folder_given_by_the_host_is_kept(make_package, jobs, tmp_path, capsys):
    package = make_package(job=jobs.WritesOutput())
    elsewhere = tmp_path / 'elsewhere' / 'out'
    code, _, _ = run_main(package, capsys, tmp_path / 'run', **{protocol.ENV_OUTPUT: str(elsewhere)})
    assert code == 0 and (elsewhere / 'hello.txt').exists()


def test_callable_job_and_remapped_classes(make_package, jobs, tmp_path, capsys):
    package = make_package(job=jobs.answer)
    loaded = entry.EntryPoint(package.dir).load_resource('job')
    assert loaded.__module__ == f'{package.module}.rtjobs.tasks' and loaded is not jobs.answer
    code, out, _ = run_main(package, capsys, tmp_path / 'run')
    assert code == 0 and result(tmp_path / 'run') == 42
    assert 'Job is callable, calling directly' in messages(out)


def test_entry_point_reads_its_metadata_and_resources(make_package, jobs):
    package = make_package(job=jobs.Returns(1), other=[1, 2])
    point = entry.EntryPoint(package.dir)
    assert (point.package, point.version, point.module, point.roots) == ('rtjob', '1.0', package.module, ['rtjobs'])
    assert point.resources() == ['job', 'other']
    assert point.load_resource('other') == [1, 2]
    assert type(point.load_resource('job')).__module__ == f'{package.module}.rtjobs.tasks'


def test_copied_package_finds_itself(make_package, jobs, tmp_path, capsys):
    """Imported as the job package (MODULE._tg_runtime), EntryPoint() and main() need no folder."""
    package = make_package(job=jobs.Returns('copied'))
    import importlib
    module = importlib.import_module(package.module)
    assert module.EntryPoint().package_dir == str(package.dir)
    assert module.main.__module__ == f'{package.module}._tg_runtime.entry'
    assert module.main(environ={protocol.ENV_RUN_DIR: str(tmp_path / 'run')}) == 0
    assert result(tmp_path / 'run') == 'copied'


def test_host_copy_without_a_package_folder_says_so():
    with pytest.raises(FileNotFoundError, match='no job package built by tg_pipeline'):
        entry.EntryPoint()


@pytest.mark.parametrize('args', [(0,), (None,), ()], ids=['exit-0', 'exit-None', 'exit-bare'])
def test_sys_exit_success_is_success(make_package, jobs, tmp_path, capsys, args):
    package = make_package(job=jobs.Exits(*args))
    code, out, err = run_main(package, capsys, tmp_path / 'run')
    assert code == 0 and err == ''
    assert messages(out)[-2:] == ['Job has exited successfully', 'DONE. Exiting Training Grounds.']
    assert result(tmp_path / 'run') is None
    assert exit_record(tmp_path / 'run') == {'exit_code': 0, 'reason': 'ok'}


@pytest.mark.parametrize('arg, code, stderr', [(3, 3, ''), ('no data found', 1, 'no data found\n'),
                                               (256, 1, 'exit status 256 is out of the range 0-255')])
def test_sys_exit_failure_is_the_exit_status(make_package, jobs, tmp_path, capsys, arg, code, stderr):
    package = make_package(job=jobs.Exits(arg))
    run_dir = tmp_path / 'run'
    got, out, err = run_main(package, capsys, run_dir)
    assert got == code and stderr in err and 'Traceback' not in err
    assert messages(out)[-2:] == ['Job has NOT exited successfully', 'DONE. Exiting Training Grounds.']
    assert exit_record(run_dir) == {'exit_code': code, 'reason': 'sys.exit'}
    assert not (run_dir / protocol.TRACEBACK_FILE).exists() and not (run_dir / protocol.RESULT_FILE).exists()


@pytest.mark.parametrize('error, code', [(ValueError, 1), (KeyboardInterrupt, 130)])
def test_exception_keeps_the_job_traceback(make_package, jobs, tmp_path, capsys, error, code):
    package = make_package(job=jobs.Raises(error))
    run_dir = tmp_path / 'run'
    got, out, err = run_main(package, capsys, run_dir)
    trace = (run_dir / protocol.TRACEBACK_FILE).read_text()
    assert got == code and trace == err
    # the project's path (not the package's), the source line, and none of the entry point's frames
    assert re.search(r'^  rtjobs/tasks\.py:\d+, in run\n    raise self\.error\(.boom in the job.\)$', trace, re.M), trace
    assert package.module not in trace and '_tg_runtime' not in trace
    assert trace.rstrip().endswith(f'{error.__name__}: boom in the job')
    assert messages(out)[-2:] == ['Job has NOT exited successfully', 'DONE. Exiting Training Grounds.']
    assert exit_record(run_dir) == {'exit_code': code, 'reason': 'exception'}


def test_job_that_cannot_run_fails_with_a_traceback(make_package, tmp_path, capsys):
    code, out, err = run_main(make_package(job=5), capsys, tmp_path / 'run')
    assert code == 1 and "TypeError: <class 'int'> has no run() method and is not callable" in err
    assert "Job of type <class 'int'> is loaded" in messages(out)


def test_unpicklable_result_goes_by_cloudpickle(make_package, jobs, tmp_path, capsys):
    code, _, _ = run_main(make_package(job=jobs.ReturnsLambda()), capsys, tmp_path / 'run')
    assert code == 0 and result(tmp_path / 'run')(14) == 42


def test_without_run_folder_nothing_is_kept(make_package, jobs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_main(make_package(job=jobs.Exits(4)), capsys)
    assert code == 4 and protocol.ENV_OUTPUT not in os.environ
    assert sorted(p.name for p in tmp_path.iterdir()) == ['site']


@pytest.mark.parametrize('slot, expected, variant_line', [
    (None, 'plain', None), ('1', 'B', 'Variant 1 of 2: b'), ('0', 'A', 'Variant 0 of 2: a'),
    ('x3k9node', 'A', 'Variant 0 of 2: a')])
def test_variant_is_chosen_by_slot(make_package, jobs, tmp_path, capsys, slot, expected, variant_line):
    package = make_package(job=jobs.Returns('plain'), variants=[('a', jobs.Returns('A')), ('b', jobs.Returns('B'))])
    environ = {} if slot is None else {protocol.ENV_SLOT: slot}
    code, out, _ = run_main(package, capsys, tmp_path / 'run', **environ)
    assert code == 0 and result(tmp_path / 'run') == expected
    assert (variant_line in messages(out)) if variant_line else not any('Variant' in m for m in messages(out))


def test_slot_without_variants_runs_the_job(make_package, jobs, tmp_path, capsys):
    code, _, _ = run_main(make_package(job=jobs.Returns('only')), capsys, tmp_path / 'run', **{protocol.ENV_SLOT: '2'})
    assert code == 0 and result(tmp_path / 'run') == 'only'


@pytest.mark.parametrize('fails', [False, True], ids=['success', 'failure'])
def test_send_back_prints_the_run_folder_as_markers(make_package, jobs, tmp_path, capsys, fails):
    code = 1 if fails else 0
    package = make_package(job=jobs.Returns('x'),
                           variants=[('a', jobs.Returns('A')), ('b', jobs.Raises() if fails else jobs.Returns('B'))])
    got, out, _ = run_main(package, capsys, tmp_path / 'run', **{protocol.ENV_SLOT: '1', protocol.ENV_SEND_BACK: '1'})
    markers = [protocol.parse_marker(line) for line in out.splitlines() if protocol.parse_marker(line)]
    assert got == code and markers and {(m[0], m[1]) for m in markers} == {(1, protocol.SEND_BACK_FILE)}
    data = protocol.join_markers({m[2]: m[4] for m in markers}, markers[0][3])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = {os.path.normpath(n) for n in tar.getnames()}
        record = json.load(tar.extractfile(f'./{protocol.EXIT_FILE}'))
    assert {protocol.EXIT_FILE, protocol.OUTPUT_DIR} <= names
    assert (protocol.TRACEBACK_FILE in names) == bool(code) and (protocol.RESULT_FILE in names) == (not code)
    assert record['exit_code'] == code
    assert out.rindex('TG_PIPELINE_FILE') < out.index('DONE. Exiting Training Grounds.')


# --- marker lines --------------------------------------------------------------------------------------

@pytest.mark.parametrize('data, size, parts', [
    (b'', 8000, 1), (b'x', 8000, 1), (bytes(6000), 8000, 1), (bytes(6001), 8000, 2),
    (bytes(range(256)) * 40, 100, 137), (b'\n \x00TG_PIPELINE_FILE 1 a 1/1 b', 4, 10)])
def test_marker_round_trip(data, size, parts):
    lines = protocol.marker_lines(7, 'run.tar.gz', data, size=size)
    assert len(lines) == parts and all('\n' not in line for line in lines)
    parsed = [protocol.parse_marker(line + '\n') for line in lines]
    assert all(p[:2] == (7, 'run.tar.gz') and p[3] == parts and len(p[4]) <= size for p in parsed)
    assert protocol.join_markers({p[2]: p[4] for p in reversed(parsed)}, parts) == data


def test_marker_line_format_is_fixed():
    assert protocol.marker_lines(2, 'run.tar.gz', b'x') == ['TG_PIPELINE_FILE 2 run.tar.gz 1/1 eA==']
    assert protocol.marker_lines(0, 'empty', b'') == ['TG_PIPELINE_FILE 0 empty 1/1 ']
    assert protocol.parse_marker('TG_PIPELINE_FILE 2 run.tar.gz 1/1 eA==') == (2, 'run.tar.gz', 1, 1, 'eA==')


@pytest.mark.parametrize('line', [
    '', 'hello', '2026-01-01 INFO: TG_PIPELINE_FILE 0 a 1/1 eA==', 'TG_PIPELINE_FILE x a 1/1 eA==',
    'TG_PIPELINE_FILE 0 a 2/1 eA==', 'TG_PIPELINE_FILE 0 a 0/1 eA==', 'TG_PIPELINE_FILE 0 a 1/1 not base64!',
    'TG_PIPELINE_FILE 0 a 1/1'])
def test_other_lines_are_no_markers(line):
    assert protocol.parse_marker(line) is None


def test_incomplete_or_bad_markers_are_refused():
    with pytest.raises(ValueError, match='missing'):
        protocol.join_markers({1: 'eA==', 3: ''}, 3)
    with pytest.raises(ValueError, match='missing'):
        protocol.join_markers({}, 0)
    with pytest.raises(ValueError, match='base64'):
        protocol.join_markers({1: 'eA='}, 1)
    with pytest.raises(ValueError):
        protocol.marker_lines(0, 'two words', b'x')


# --- the package and its imports -----------------------------------------------------------------------

def test_sdist_carries_the_runtime_byte_for_byte(tmp_path, jobs):
    members = sdist.build_members('rtjob', '1.0', 'rtjob__1_0', [Path(jobs.__file__).parent], {'job': b'j'}, [])
    top = 'rtjob__1_0-1.0/rtjob__1_0'
    assert [p.name for p in sdist.runtime_files()] == ['__init__.py', 'protocol.py', 'entry.py', 'aliases.py', 'tee.py',
                                                      'reference.py', 'trace.py']
    for file in sdist.runtime_files():
        assert members[f'{top}/_tg_runtime/{file.name}'] == file.read_bytes()
    assert json.loads(members[f'{top}/_tg_meta.json']) == {
        'module': 'rtjob__1_0', 'package': 'rtjob', 'roots': ['rtjobs'], 'version': '1.0'}
    assert members[f'{top}/__main__.py'] == b'import sys\n\nfrom ._tg_runtime.entry import main\n\nsys.exit(main())\n'
    assert b'from ._tg_runtime.entry import EntryPoint, main\n' in members[f'{top}/__init__.py']
    assert members == sdist.build_members('rtjob', '1.0', 'rtjob__1_0', [Path(jobs.__file__).parent],
                                          {'job': b'j'}, [])


def test_source_root_named_like_the_runtime_is_refused(tmp_path):
    (tmp_path / '_tg_runtime').mkdir()
    with pytest.raises(PackagingError, match='_tg_runtime'):
        sdist.build_members('p', '1', 'p__1', [tmp_path / '_tg_runtime'], {}, [])


IMPORTS = '''
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import importlib
for name in sys.argv[2:]:
    importlib.import_module(name)
EXTRA
print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))
'''


def imported(path, names, extra=''):
    code = IMPORTS.replace('EXTRA', textwrap.dedent(extra))
    done = subprocess.run([sys.executable, '-I', '-c', code, str(path), *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1])) - set(sys.stdlib_module_names)


def test_job_package_imports_only_the_standard_library(make_package, jobs, tmp_path):
    package = make_package(job=jobs.Returns(1))
    run = f'''
        import os, io, contextlib
        with contextlib.redirect_stdout(io.StringIO()):
            code = sys.modules[{package.module!r}].main(environ={{'TG_PIPELINE_RUN_DIR': {str(tmp_path / 'run')!r},
                                                             'TG_PIPELINE_SEND_BACK': '1'}})
        assert code == 0, code
    '''
    names = [package.module, f'{package.module}._tg_runtime.protocol', f'{package.module}._tg_runtime.entry']
    # the job's class loads from the package (MODULE.rtjobs), not from a top-level rtjobs
    assert imported(package.top, names, run) == {package.module}


def test_host_runtime_imports_only_the_standard_library():
    names = ['tg_pipeline.runtime', 'tg_pipeline.runtime.protocol', 'tg_pipeline.runtime.entry']
    assert imported(REPO, names) == {'tg_pipeline'}


def test_exit_now_keeps_what_pythons_exit_keeps_but_the_teardown(tmp_path):
    """The job's process ends without tearing its modules down: its atexit handlers still run, its non-daemon
    threads are waited for, and a file it left open (a module's global) keeps what it wrote."""
    script = textwrap.dedent(f'''
        import atexit, threading, time
        from tg_pipeline.runtime.entry import exit_now
        left_open = open({str(tmp_path / 'open.txt')!r}, 'w')
        left_open.write('buffered line')
        atexit.register(lambda: open({str(tmp_path / 'atexit.txt')!r}, 'w').write('handler ran'))
        def later():
            time.sleep(0.2)
            open({str(tmp_path / 'thread.txt')!r}, 'w').write('thread done')
        threading.Thread(target=later).start()
        exit_now(3)
        print('never here')
    ''')
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert done.returncode == 3 and 'never here' not in done.stdout, done.stderr
    assert (tmp_path / 'open.txt').read_text() == 'buffered line'
    assert (tmp_path / 'atexit.txt').read_text() == 'handler ran'
    assert (tmp_path / 'thread.txt').read_text() == 'thread done'


def test_a_factory_is_called_once_and_only_a_call_its_signature_refuses_is_a_load_error(tmp_path, monkeypatch):
    from tg_pipeline.runtime import reference
    module = f'factories_{uuid.uuid4().hex[:8]}'
    (tmp_path / f'{module}.py').write_text(textwrap.dedent('''
        CALLS = []

        class Job:
            def run(self):
                return 1

        def make(size):
            CALLS.append(size)
            if size < 0:
                raise TypeError('size must not be negative')  # the user's own TypeError
            return Job()
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))

    def record(*args, **kwargs):
        return reference.make_record('Train', f'{module}:make', args, kwargs, line=7)
    assert reference.build(record(3)).run() == 1
    with pytest.raises(TypeError, match='size must not be negative'):
        reference.build(record(-1))
    with pytest.raises(reference.LoadError) as refused:
        reference.build(record(3, depth=2))
    assert "pipeline.toml:7, key 'jobs.Train.factory'" in refused.value.problem
    assert 'does not accept the configured args/kwargs' in refused.value.problem
    assert sys.modules[module].CALLS == [3, -1]  # the refused call never ran the factory's body
