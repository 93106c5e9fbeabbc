"""Faults that lose data or mislead, without an engine: large return values are summed up, not shown (nor even
loaded); logs are printed and saved chunk by chunk, bytes as they are; a swarm service's log is read into
files as it comes (lines the engine cut into frames joined, run folders decoded part by part)."""
import base64
import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.engine import FakeEngine
from fakes.runs import IMAGE, local_backend, make_spec, run
from tg_pipeline.errors import JobFailed
from tg_pipeline.console import Console
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import model as base, lifecycle, results
from tg_pipeline.runs.results import shown_object, shown_value
from tg_pipeline.runs.attached import run_attached
from tg_pipeline.runs.lifecycle import Scope
from tg_pipeline.runs.service_logs import LINE_LIMIT, ServiceLog
from tg_pipeline.runtime import protocol

REPO = Path(__file__).resolve().parents[2]
RAW = b'bad \xff\xfe utf-8\r\nnul \x00\n\xe2\x82'


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def paths(tmp_path):
    return RunPaths(tmp_path / 'local')


# --- return values ----------------------------------------------------------------------------------------
def keep(folder, value, kind=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / protocol.RESULT_FILE).write_bytes(pickle.dumps(value, protocol=4))
    (folder / protocol.RESULT_INFO_FILE).write_text(json.dumps({'type': kind or type(value).__name__}))
    return folder


def test_a_small_value_is_shown_as_its_repr(tmp_path):
    assert shown_value(keep(tmp_path / 'run', {'loss': 0.5}), '') == "{'loss': 0.5}"
    assert shown_value(tmp_path / 'nothing', '') == 'None'
    assert shown_object([1, 2]) == '[1, 2]'


def test_a_large_value_is_summed_up_and_never_loaded(tmp_path, monkeypatch):
    folder = keep(tmp_path / 'run', [os.urandom(1 << 16) for _ in range(4)])
    monkeypatch.setattr(results, 'load_result', lambda *a: pytest.fail('a large value was loaded to be shown'))
    size = (folder / protocol.RESULT_FILE).stat().st_size
    assert shown_value(folder, '') == \
        f'<list, {size / 1000:.1f} kB pickled, in {folder / protocol.RESULT_FILE}>'


def test_a_value_with_a_long_repr_is_summed_up(tmp_path):
    folder = keep(tmp_path / 'run', list(range(1000)))
    shown = shown_value(folder, '')
    assert shown.startswith('<list, ') and shown.endswith(f' pickled, in {folder / protocol.RESULT_FILE}>')
    assert shown_object(list(range(1000))).startswith('<list, ')
    assert shown_object(bytes(1 << 20)) == '<bytes, 1.0 MB pickled>'


def test_a_value_that_cannot_be_loaded_here_is_named_not_raised(tmp_path):
    folder = keep(tmp_path / 'run', 1, kind='Model')
    (folder / protocol.RESULT_FILE).write_bytes(b'cnowhere\nModel\n.')  # a class of a module not here
    hints = []
    shown = shown_value(folder, '', hints)
    assert shown == ("the value holds a nowhere.Model that cannot be loaded here (ModuleNotFoundError: No module "
                     f"named 'nowhere'): 16 bytes in {folder / protocol.RESULT_FILE}")
    assert hints == ["pip install nowhere (the package that provides the module 'nowhere') here to load it; "
                     'the image has it']


def test_the_report_sums_up_a_large_value(tmp_path):
    folder = keep(tmp_path / 'run', bytes(100 << 10))
    result = base.RunResult(run_id='r1', where='local', host='local', job='Big', exit_code=0, run_dir=folder)
    out = io.StringIO()
    lifecycle.report(result, Console(out=out))
    assert out.getvalue().splitlines()[0] == f'Result: <bytes, 102.4 kB pickled, in {folder / "result.pkl"}>'
    assert result.value == bytes(100 << 10)  # the Python API still gets the value itself


def test_swarm_variant_values_are_loaded_when_asked_for(tmp_path):
    folder = keep(tmp_path / 'variant_0', {'score': 3})
    variant = base.Variant({'label': 'a', 'ok': True, 'run_dir': str(folder)}, module='')
    failed = base.Variant({'label': 'b', 'ok': False, 'run_dir': str(tmp_path / 'variant_1')})
    assert 'value' not in variant and variant['value'] == {'score': 3}
    with pytest.raises(KeyError):
        failed['value']
    result = base.RunResult(run_id='r', where='swarm', host='swarm', job='S', variants=[variant, failed])
    assert result.value == {'a': {'score': 3}, 'b': None}


# --- attached: sys.exit -----------------------------------------------------------------------------------
class Exits:
    def __init__(self, code):
        self.code = code

    def run(self):
        sys.exit(self.code)


@pytest.mark.parametrize('code', [0, None])
def test_an_attached_jobs_sys_exit_0_is_a_success(code):
    assert run_attached(Exits(code), 'E') is None


def test_an_attached_jobs_sys_exit_n_fails_with_that_status():
    with pytest.raises(JobFailed) as info:
        run_attached(Exits(7), 'E')
    assert info.value.exit_code == 7
    assert info.value.message.startswith('job E exited with status 7: it called sys.exit (attached run)')


# --- logs chunk by chunk, bytes as they are ----------------------------------------------------------------
def test_logs_of_an_ended_run_are_printed_and_saved_as_they_are(engine, paths):
    stdout, stderr = b'x' * 40000 + b'\n' + RAW, RAW
    engine.program(IMAGE, stdout=stdout, stderr=stderr, files={'result.pkl': pickle.dumps(1)})
    handle = run(engine.client(), make_spec(engine), paths, detach=True)[0]
    engine.finish()
    backend, scope = local_backend(engine.client()), Scope('Greeter', 'proj-a')
    out = io.StringIO()
    lifecycle.logs(backend, scope, paths, console=Console(out=out))
    shown = out.getvalue().split('\n', 1)[1]
    assert shown == stdout.decode('utf-8', 'replace') + '# stderr\n' + stderr.decode('utf-8', 'replace')
    lifecycle.result(backend, scope, paths)
    assert paths.out(handle.run_id).read_bytes() == stdout and paths.err(handle.run_id).read_bytes() == stderr
    again = io.StringIO()
    lifecycle.logs(backend, scope, paths, console=Console(out=again))
    assert again.getvalue().split('\n', 1)[1] == shown
    assert lifecycle.saved_logs(paths, handle.run_id) == (stdout, stderr)


# --- a swarm service's log ----------------------------------------------------------------------------------
def frame(task, data):
    return f'com.docker.swarm.node.id=n1,com.docker.swarm.task.id={task} '.encode() + data


def markers(index, data, size=12):
    return [line.encode() + b'\n' for line in protocol.marker_lines(index, protocol.SEND_BACK_FILE, data, size=size)]


def test_a_service_log_is_joined_per_task_byte_for_byte(tmp_path):
    long = b'L' * (LINE_LIMIT + 10)
    frames = [frame('t0', b'first \xff\n'), frame('t1', b'other task\n'), frame('t0', long[:16384]),
              frame('t0', long[16384:] + b'\n'), frame('gone', b'a task of no slot\n'),
              *[frame('t0', m) for m in markers(0, b'archive bytes')], frame('t0', b'no line end')]
    log = ServiceLog(tmp_path, {'t0': 0, 't1': 1})
    log.read(frames)
    assert log.log_path(0).read_bytes() == b'first \xff\n' + long + b'\nno line end'
    assert log.log_path(1).read_bytes() == b'other task\n'
    assert log.slots == [0, 1]
    assert log.archives()[0].read_bytes() == b'archive bytes'


def test_a_run_folder_with_a_part_missing_is_not_taken(tmp_path):
    parts = markers(0, bytes(range(200)))
    log = ServiceLog(tmp_path, {'t0': 0})
    log.read([frame('t0', m) for m in parts[:2] + parts[3:]])
    assert log.archives() == {}
    whole = ServiceLog(tmp_path / 'again', {'t0': 0})
    whole.read([frame('t0', m) for m in parts])
    assert whole.archives()[0].read_bytes() == bytes(range(200))


def test_marker_parts_sent_one_by_one_are_the_marker_lines():
    data = os.urandom(20000)
    raw, parts = protocol.marker_parts(len(data))
    lines = [protocol.marker_line(2, 'run.tar.gz', part, parts, data[(part - 1) * raw:part * raw])
             for part in range(1, parts + 1)]
    assert lines == protocol.marker_lines(2, 'run.tar.gz', data)
    assert base64.b64decode(''.join(protocol.parse_marker(line)[4] for line in lines)) == data


# --- the entry point's exact copies of stdout and stderr ----------------------------------------------------
TEED = '''
import os, resource, signal, sys, time
from tg_pipeline.runtime.entry import run_teed

if {limit}:  # files this process writes may not grow larger (as on a full disk)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))

def job():
    os.write(1, {out!r} + bytes(range(256)) * {repeat})
    sys.stdout.buffer.write(b'via sys.stdout\\n')
    sys.stdout.flush()
    os.write(2, {err!r})
    if {sleep}:
        print('sleeping', flush=True)
        time.sleep({sleep})
    return {code}

sys.exit(run_teed(sys.argv[1], job, *sys.argv[2:]))
'''


def teed(tmp_path, out=b'', err=b'', code=0, sleep=0, repeat=0, limit=0, run_dir=None):
    script = TEED.format(out=out, err=err, code=code, sleep=sleep, repeat=repeat, limit=limit)
    extra = [str(run_dir)] if run_dir else []
    return subprocess.Popen([sys.executable, '-c', script, str(tmp_path / 'logs'), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, 'PYTHONPATH': str(REPO)})


def copies(tmp_path):
    folder = tmp_path / 'logs'
    return ((folder / 'stdout').read_bytes(), (folder / 'stderr').read_bytes(),
            json.loads((folder / protocol.LOG_DIGEST).read_text()))


def test_the_job_output_is_copied_byte_for_byte_and_passed_on(tmp_path):
    long = bytes(range(256)) * 300  # more than a pipe holds
    process = teed(tmp_path, out=RAW, repeat=300, err=RAW, code=5)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 5
    saved_out, saved_err, digest = copies(tmp_path)
    assert saved_out == stdout == RAW + long + b'via sys.stdout\n'
    assert saved_err == stderr == RAW
    assert digest == {'stdout': {'size': len(saved_out), 'sha256': hashlib.sha256(saved_out).hexdigest()},
                      'stderr': {'size': len(RAW), 'sha256': hashlib.sha256(RAW).hexdigest()}}


def test_the_digest_is_left_in_the_run_folder_too_when_there_is_one(tmp_path):
    (tmp_path / 'run').mkdir()
    assert teed(tmp_path, out=b'x\n', run_dir=tmp_path / 'run').wait(timeout=30) == 0
    digest = copies(tmp_path)[2]
    assert json.loads((tmp_path / 'run' / protocol.RUN_LOG_DIGEST).read_text()) == digest
    assert digest['stdout']['size'] == len(b'x\n' + b'via sys.stdout\n')
    assert teed(tmp_path, run_dir=tmp_path / 'none').wait(timeout=30) == 0
    assert not (tmp_path / 'none').exists()  # no run folder: the job died before it, and none is made


def test_a_signal_reaches_the_job_and_its_status_is_the_containers(tmp_path):
    process = teed(tmp_path, out=b'before\n', sleep=60)
    assert process.stdout.readline() == b'before\n'
    assert process.stdout.readline() == b'via sys.stdout\n'
    assert process.stdout.readline() == b'sleeping\n'
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    saved_out, _, digest = copies(tmp_path)
    assert saved_out == b'before\nvia sys.stdout\nsleeping\n' and digest['stdout']['size'] == len(saved_out)


def test_a_copy_that_cannot_be_written_is_dropped_and_the_output_goes_on(tmp_path):
    process = teed(tmp_path, out=b'fits', repeat=40, err=b'small\n', limit=4096)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert stdout == b'fits' + bytes(range(256)) * 40 + b'via sys.stdout\n' and stderr == b'small\n'
    folder = tmp_path / 'logs'
    assert not (folder / 'stdout').exists() and (folder / 'stderr').read_bytes() == b'small\n'
    assert set(json.loads((folder / protocol.LOG_DIGEST).read_text())) == {'stderr'}


def keeps(stdout: bytes, stderr: bytes, *, digest=True) -> dict:
    """The files the entry point leaves in LOG_DIR for that output (with its digest unless told not)."""
    files = {f'{protocol.LOG_DIR}/stdout': stdout, f'{protocol.LOG_DIR}/stderr': stderr}
    if digest:
        files[f'{protocol.LOG_DIR}/{protocol.LOG_DIGEST}'] = json.dumps(
            {name: {'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}
             for name, data in (('stdout', stdout), ('stderr', stderr))}).encode()
    return files


def fetched(engine) -> list[str]:
    return [call.params.get('path') for call in engine.find('GET', '/containers/*/archive')]


@pytest.mark.parametrize('digest', [True, False], ids=['digest', 'killed-before-its-digest'])
def test_a_log_the_engine_changed_is_replaced_by_the_exact_copy(engine, paths, digest):
    exact = b'bad \xff\xfe\n' + b'L' * 20000 + b'\nend'
    mangled = b'bad \xef\xbf\xbd\xef\xbf\xbd\n' + b'L' * 20000 + b'end'  # as json-file and local drivers keep it
    engine.program(IMAGE, stdout=mangled, stderr=b'warn\n', files={**keeps(exact, b'warn\n', digest=digest),
                                                                    'result.pkl': pickle.dumps(1)})
    result, out, _ = run(engine.client(), make_spec(engine), paths)
    assert paths.out(result.run_id).read_bytes() == exact and paths.err(result.run_id).read_bytes() == b'warn\n'
    travelled = fetched(engine)
    assert f'{protocol.LOG_DIR}/stdout' in travelled
    assert (f'{protocol.LOG_DIR}/stderr' in travelled) == (not digest)  # with a digest, only what differs travels


def test_a_log_saved_exactly_while_streaming_is_not_fetched_again(engine, paths):
    engine.program(IMAGE, stdout=b'fine\n', stderr=b'', files={**keeps(b'fine\n', b''), 'result.pkl': pickle.dumps(1)})
    result, _, _ = run(engine.client(), make_spec(engine), paths)
    assert paths.out(result.run_id).read_bytes() == b'fine\n'
    digest_only = [f'{protocol.LOG_DIR}/{protocol.LOG_DIGEST}']
    assert [p for p in fetched(engine) if p.startswith(protocol.LOG_DIR)] == digest_only


def in_run_folder(files: dict) -> dict:
    """``files`` (see :func:`keeps`) with the digest also in the run folder, as the entry point leaves it now."""
    return {**files, protocol.RUN_LOG_DIGEST: files[f'{protocol.LOG_DIR}/{protocol.LOG_DIGEST}']}


def test_the_digest_comes_with_the_run_folder_in_one_request_and_is_not_kept(engine, paths):
    engine.program(IMAGE, stdout=b'fine\n', stderr=b'', files={**in_run_folder(keeps(b'fine\n', b'')),
                                                               'result.pkl': pickle.dumps(1)})
    result, _, _ = run(engine.client(), make_spec(engine), paths)
    assert paths.out(result.run_id).read_bytes() == b'fine\n' and paths.err(result.run_id).read_bytes() == b''
    assert fetched(engine) == [protocol.RUN_DIR]
    assert sorted(p.name for p in result.run_dir.iterdir()) == ['result.pkl']


def test_a_digest_from_the_run_folder_that_differs_still_fetches_the_exact_copy(engine, paths):
    exact, mangled = b'bad \xff\n', b'bad \xef\xbf\xbd\n'
    engine.program(IMAGE, stdout=mangled, stderr=b'', files={**in_run_folder(keeps(exact, b'')),
                                                              'result.pkl': pickle.dumps(1)})
    result, _, _ = run(engine.client(), make_spec(engine), paths)
    assert paths.out(result.run_id).read_bytes() == exact
    assert fetched(engine) == [protocol.RUN_DIR, f'{protocol.LOG_DIR}/stdout']


def test_a_run_collected_without_streaming_takes_the_copies_not_the_engines_log(engine, paths):
    engine.program(IMAGE, stdout=b'mangled\n', stderr=b'x', files={**keeps(b'exact \xff\n', b'e\x00'),
                                                                   'result.pkl': pickle.dumps(1)})
    handle = run(engine.client(), make_spec(engine), paths, detach=True)[0]
    engine.finish()
    lifecycle.result(local_backend(engine.client()), Scope('Greeter', 'proj-a'), paths)
    assert paths.out(handle.run_id).read_bytes() == b'exact \xff\n'
    assert paths.err(handle.run_id).read_bytes() == b'e\x00'
    assert engine.find('GET', '/containers/*/logs') == []


def test_only_a_container_run_of_tg_pipeline_keeps_copies():
    from tg_pipeline.runtime.entry import keeps_log_copies
    assert keeps_log_copies({protocol.ENV_RUN_DIR: protocol.RUN_DIR})
    assert not keeps_log_copies({protocol.ENV_RUN_DIR: protocol.RUN_DIR, protocol.ENV_SEND_BACK: '1'})  # swarm
    assert not keeps_log_copies({protocol.ENV_RUN_DIR: '/tmp/somewhere'}) and not keeps_log_copies({})
