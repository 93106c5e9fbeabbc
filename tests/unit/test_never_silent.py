"""Never a silent success (issue 25), without an engine: a record of another shape counts as absent, an exception
that ends doit's run outside a task (an up-to-date check, a reporter's hook, an exit handler) ends the command with
one ERROR and a status that is not 0, a corrupt doit state file is set aside, a value's form is checked before any
step, a return value that cannot be kept is said, and the records of a run the engine stopped under, or whose
container vanished, say so (the fake engine)."""
import io
import json
import os
import sqlite3
import threading

import pytest

from fakes.engine import FakeEngine
from fakes.runs import IMAGE, local_backend, make_spec
from tg_pipeline.console import Console
from tg_pipeline.errors import JobFailed, PipelineError
from tg_pipeline.paths import JobPaths, RunPaths, has_shape, read_record
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.lifecycle import Scope, run_container
from tg_pipeline.runtime import entry, protocol

# the shapes the hostile trial wrote into build/JOB/.steps/*.json, image.json and push.json, and worse
BAD = {'list': '[1,2,3]', 'null': 'null', 'str': '"str"', 'wrong type': '{"image_id": 5}', 'garbage': '\x00{{not json',
       'truncated': '{"image_id": "sha256:ab'}


@pytest.mark.parametrize('text', BAD.values(), ids=BAD)
def test_a_record_of_another_shape_counts_as_absent(tmp_path, text):
    path = tmp_path / 'image.json'
    path.write_text(text)
    assert read_record(path, {'image_id': str, 'tag': str}) is None
    path.write_text('{"image_id": "sha256:ab", "tag": "x:1"}')
    assert read_record(path, {'image_id': str, 'tag': str}) == {'image_id': 'sha256:ab', 'tag': 'x:1'}


def test_a_shape_checks_kinds_and_optional_keys():
    assert has_shape({'a': 1}, {'a': int, 'b?': str})
    assert not has_shape({'a': True}, {'a': int})  # a boolean is no number here
    assert not has_shape({'a': 1, 'b': 2}, {'a': int, 'b?': str})
    assert not has_shape([{'a': 1}], {'a': int})


@pytest.mark.parametrize('text', BAD.values(), ids=BAD)
def test_every_build_record_of_another_shape_is_as_if_never_written(tmp_path, text):
    from tg_pipeline.image.build import image_up_to_date, recorded_image
    from tg_pipeline.image.job_image import ensure_deps, recorded_composed
    from tg_pipeline.image.registry import push_up_to_date, recorded_push
    from tg_pipeline.workflow.locks import JobLock
    p = JobPaths(tmp_path / 'build', 'Job', 'job__1', '1')
    for record in (p.image, p.push, p.deps, p.image_config, p.import_check, p.pyproject):
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(text)
    assert recorded_image(p.image) is None and image_up_to_date(p.image, client=object()) is False
    assert recorded_push(p.push, 'sha256:ab') is None
    assert push_up_to_date(p.push, p.image, client=object(), reference='r.example.com/job:1') is False
    assert recorded_composed(p) is None
    guard = JobLock(p.lock, 'Job').guard('sdist', {'actions': [lambda: None], 'file_dep': [], 'targets': []})
    stamp = p.dir / '.steps' / 'sdist.json'
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(text)
    assert guard['uptodate'][-1]() is False  # the step runs again
    engine = FakeEngine()
    (p.context / 'Dockerfile').parent.mkdir(parents=True, exist_ok=True)
    for name in ('Dockerfile', 'requirements.txt'):
        (p.context / name).write_text('FROM python:3.11-slim\n' if name == 'Dockerfile' else '')
    image_id, built = ensure_deps(engine.client(), p.context, 'job:1-deps', p.deps, console=Console(quiet=True))
    assert built and json.loads(p.deps.read_text())['local']['image_id'] == image_id


@pytest.mark.parametrize('text', BAD.values(), ids=BAD)
def test_a_cache_of_another_shape_is_rebuilt(tmp_path, monkeypatch, text):
    from tg_pipeline.image import transfer
    from tg_pipeline.job.checks import start_import_check
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    for name in ('layer_ids.json', 'image_layers.json'):
        os.makedirs(os.path.dirname(transfer._cache_path(name)), exist_ok=True)
        with open(transfer._cache_path(name), 'w') as file:
            file.write(text)
        assert transfer._load_cache(name) == {}
    record = tmp_path / 'import_check.json'
    record.write_text(text)
    check = start_import_check('Job', [], [], [tmp_path], record=record)
    assert check.process is not None  # the check runs: a bad record is no pass
    check.cancel()


@pytest.mark.parametrize('text', BAD.values(), ids=BAD)
def test_a_run_record_that_cannot_be_read_is_rebuilt_from_its_run_folder(tmp_path, text):
    from tg_pipeline.runs.records import saved_record, saved_result
    paths = RunPaths(tmp_path / 'local')
    run_dir = paths.run_dir('r1')
    run_dir.mkdir(parents=True)
    (run_dir / protocol.EXIT_FILE).write_text('{"exit_code": 0, "reason": "ok"}')
    (run_dir / protocol.RESULT_FILE).write_bytes(__import__('pickle').dumps({'sum': 45}))
    paths.record('r1').write_text(text)
    assert paths.read_record('r1') == {}
    assert saved_record(paths, 'r1')['rebuilt'] is True
    result = saved_result(paths, 'r1', 'local', 'local')
    assert result.ok and result.value == {'sum': 45}


# --- doit's run ends with an exception outside any task: one ERROR, exit status 3 -----------------------------
BROKEN_CHECK = '''
from tg_pipeline.tasks import dodo_tasks

globals().update(dodo_tasks(__file__))


def broken_check():
    return {1: 2}['image_id']


def task_checked():
    return {'actions': ['echo ran'], 'uptodate': [broken_check], 'verbosity': 2}
'''
BROKEN_HOOK = '''
from tg_pipeline.tasks import dodo_tasks

globals().update(dodo_tasks(__file__))
Reporter = DOIT_CONFIG['reporter']


class Broken(Reporter):
    def add_success(self, task):
        raise RuntimeError('a hook broke')


DOIT_CONFIG['reporter'] = Broken


def task_hooked():
    return {'actions': ['echo ran'], 'verbosity': 2}
'''
BROKEN_EXIT = '''
import atexit
from tg_pipeline.tasks import dodo_tasks

globals().update(dodo_tasks(__file__))


def close_things():
    raise RuntimeError('an exit handler broke')


atexit.register(close_things)
'''


@pytest.mark.parametrize('debug', [False, True])
def test_an_up_to_date_check_that_raises_ends_the_command_with_an_error(project, debug):
    project.write('dodo.py', BROKEN_CHECK)
    result = project.doit('checked', check=False, env={'TG_PIPELINE_DEBUG': '1'} if debug else {})
    assert result.returncode == 3, result.stdout + result.stderr
    assert ("ERROR: checking whether checked is up to date failed: KeyError: 'image_id'\nTIP: run the command again "
            'with TG_PIPELINE_DEBUG=1') in result.stderr
    assert ('Traceback' in result.stderr) == debug  # ours only when asked for
    assert 'ran' not in result.stdout


def test_a_reporter_hook_that_raises_ends_the_command_with_an_error(project):
    project.write('dodo.py', BROKEN_HOOK)
    result = project.doit('hooked', check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert 'ERROR: doit stopped failed: RuntimeError: a hook broke' in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('debug', [False, True])
def test_an_exit_handler_that_raises_ends_the_command_with_an_error(project, debug):
    project.write('dodo.py', BROKEN_EXIT)
    result = project.doit('list', check=False, env={'TG_PIPELINE_DEBUG': '1'} if debug else {})
    assert result.returncode == 3, result.stdout + result.stderr
    assert 'ERROR: the exit handler close_things failed: RuntimeError: an exit handler broke' in result.stderr
    assert ('Traceback' in result.stderr) == debug
    assert 'run_local' in result.stdout  # the command itself went on


def test_a_failed_early_ssh_login_is_said_before_the_build(monkeypatch):
    """The login to [remote] that dodo.py started has failed by the time build_image starts: build_image says
    so, before building anything (a login still going on is not waited for)."""
    from tg_pipeline import config as config_module
    from tg_pipeline.errors import SSHError
    from tg_pipeline.ssh import early
    from tg_pipeline.workflow.build_steps import early_login_failed
    from tg_pipeline.workflow.context import Context
    config = config_module.from_mapping({'remote': {'host': 'gpu-box'}, 'jobs': {'A': {'factory': 'a:A'}}},
                                        path=__import__('pathlib').Path('/nowhere/pipeline.toml'))
    ctx = Context(config, requested=['run_remote'], console=Console(quiet=True))
    going = threading.Event()
    thread = threading.Thread(target=going.wait)
    thread.start()
    monkeypatch.setitem(early._EARLY, config.remote, (thread, {}))
    early_login_failed(ctx)  # still going on: not waited for
    going.set()
    thread.join()
    error = SSHError('the host name gpu-box does not resolve (Name or service not known)')
    monkeypatch.setitem(early._EARLY, config.remote, (thread, {'error': error}))
    with pytest.raises(SSHError, match='does not resolve'):
        early_login_failed(ctx)
    early_login_failed(Context(config, requested=['run_local', 'run_remote'], console=Console(quiet=True)))


# --- a corrupt doit state file ------------------------------------------------------------------------------
def healthy_state(path):
    conn = sqlite3.connect(path)
    conn.execute('create table doit (task_id text not null primary key, task_data json)')
    for i in range(200):
        conn.execute('insert into doit values (?, ?)', (f'task{i}', json.dumps({'x': 'y' * 100})))
    conn.commit()
    conn.close()


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'a row of no JSON'])
def test_a_corrupt_doit_state_file_is_set_aside_once(tmp_path, capsys, damage):
    from tg_pipeline.workflow.locks import set_aside_if_corrupt
    path = tmp_path / '.doit.sqlite3'
    healthy_state(path)
    assert set_aside_if_corrupt(path) is None and path.exists()
    if damage == 'garbage':
        path.write_bytes(b'this is no database')
    elif damage == 'truncated':
        path.write_bytes(path.read_bytes()[:3000])
    else:
        conn = sqlite3.connect(path)
        conn.execute('update doit set task_data = ? where task_id = ?', ('{not json', 'task3'))
        conn.commit()
        conn.close()
    aside = set_aside_if_corrupt(path)
    assert aside is not None and aside.exists() and not path.exists()
    assert aside.name.startswith('.doit.sqlite3.corrupt-')
    err = capsys.readouterr().err
    assert err.count('cannot be read') == 1 and f'set aside as {aside.name}' in err
    assert set_aside_if_corrupt(path) is None  # nothing more to say


# --- a value's form, before any step ------------------------------------------------------------------------
@pytest.mark.parametrize('setting, expected', [
    ('registry=not a registry', "registry.address = 'not a registry' is no registry address"),
    ('host=ssh://bad:port', "remote host 'ssh://bad:port' is not host, user@host or ssh://user@host:port"),
    ('host=gpu-box:99999', "remote host 'gpu-box:99999' puts a port after the name"),
    ('host=ssh://gpu-box:99999', 'the port 99999 is not 1 to 65535'),
    ('remote.port=99999', 'remote.port = 99999 is no TCP port (1 to 65535)'),
    ('mounts=/nonexistent/tg-data:/data', 'mounts /nonexistent/tg-data (mounts entry "/nonexistent/tg-data:/data"), '
                                          'which does not exist on this machine'),
])
def test_a_value_of_a_wrong_form_stops_the_command_before_any_step(project, setting, expected):
    result = project.doit('run_local', 'job=ResultJob', setting, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert result.stderr.count('ERROR: ') == 1 and '\nTIP: ' in result.stderr and 'Traceback' not in result.stderr
    assert result.stdout == '' and not (project.root / 'build' / 'ResultJob').exists()


def test_a_pipeline_toml_that_is_not_utf8_is_one_error(project):
    project.path('pipeline.toml').write_bytes(project.path('pipeline.toml').read_bytes()
                                              + b'\n[jobs.Caf\xe9]\nfactory = "jobs.x:Y"\n')
    result = project.doit('run_local', 'job=ResultJob', check=False)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].endswith('not UTF-8 text: byte 0xe9 cannot be read (TOML files are UTF-8)')
    assert lines[1].startswith('TIP: save it as UTF-8, e.g.: iconv -f latin1 -t utf-8 ')
    assert len(lines) == 2


# --- a return value that cannot be kept ----------------------------------------------------------------------
@pytest.mark.parametrize('value, error', [((i for i in range(3)), "cannot pickle 'generator' object"),
                                          (threading.Lock(), "cannot pickle '_thread.lock' object")])
def test_a_value_that_cannot_be_pickled_is_said_never_none(tmp_path, value, error):
    from tg_pipeline.runs.model import RunResult
    from tg_pipeline.runs.records import failure, state_of_record
    from tg_pipeline.workflow.run_steps import say_failed_run
    folder = entry._Run({protocol.ENV_RUN_DIR: str(tmp_path)})
    assert folder.keep_result(value) == error
    folder.keep_exit(protocol.RESULT_NOT_KEPT_EXIT_CODE, protocol.REASON_RESULT, error)
    assert not (tmp_path / protocol.RESULT_FILE).exists()
    result = RunResult('r1', 'local', 'local', 'Job', exit_code=1, run_dir=tmp_path)
    problem = failure(result)
    assert isinstance(problem, JobFailed)
    assert problem.message == f'job Job returned a value that cannot be kept (local run): {error}\n  exit code: 1'
    assert 'TG_PIPELINE_OUTPUT' in problem.hint
    problem.result, out = result, io.StringIO()
    say_failed_run(problem, Console(out=out))
    assert out.getvalue().splitlines()[0] == f'Result: not kept: {error}'
    assert state_of_record({'exit_code': 1, 'result_error': error}) == 'collected, exited 1 (return value not kept)'


def test_secret_values_come_on_stdin_or_as_files_into_the_environment(tmp_path, monkeypatch):
    read, write = os.pipe()
    os.write(write, json.dumps({'API_TOKEN': 'v1 "quoted"\n'}).encode())
    os.close(write)
    environ = {protocol.ENV_SECRETS: 'API_TOKEN'}
    monkeypatch.delenv('API_TOKEN', raising=False)
    with os.fdopen(read, 'rb') as stdin:
        entry.take_secrets(environ, stdin)
    assert environ['API_TOKEN'] == os.environ['API_TOKEN'] == 'v1 "quoted"\n'
    (tmp_path / 'API_TOKEN').write_text('from a file')
    environ = {protocol.ENV_SECRETS: 'API_TOKEN', protocol.ENV_SECRETS_DIR: str(tmp_path)}
    entry.take_secrets(environ)
    assert environ['API_TOKEN'] == os.environ['API_TOKEN'] == 'from a file'


# --- what the records say ------------------------------------------------------------------------------------
@pytest.fixture
def engine():
    return FakeEngine()


def test_a_run_the_engine_stopped_under_says_so(engine, tmp_path):
    engine.program(IMAGE, run_until_stopped=True)
    client, paths = engine.client(), RunPaths(tmp_path / 'local')
    run_id = run_container(client, make_spec(engine), detach=True, console=Console(quiet=True)).run_id
    engine.restart()
    with pytest.raises(JobFailed) as info:
        lifecycle.result(local_backend(client), Scope('Greeter', 'proj-a'), paths, run_id)
    assert 'job Greeter was killed by signal 15 (local run): the Docker engine stopped under it, and started ' \
           'again at ' in info.value.message
    assert info.value.hint.endswith('run it again: doit run_local job=Greeter')
    assert paths.read_record(run_id)['engine_restarted']
    rows = lifecycle.status(local_backend(client), Scope('Greeter', 'proj-a'), paths, console=Console(quiet=True))
    assert rows[0]['state'] == 'collected, exited 143 (the engine restarted under it)'


def test_a_run_that_ended_by_itself_before_a_restart_is_no_restart(engine, tmp_path):
    engine.program(IMAGE, exit_code=0)
    client, paths = engine.client(), RunPaths(tmp_path / 'local')
    run_id = run_container(client, make_spec(engine), detach=True, console=Console(quiet=True)).run_id
    engine.finish()
    engine.restart()
    result = lifecycle.result(local_backend(client), Scope('Greeter', 'proj-a'), paths, run_id)
    assert result.ok and not result.engine_restarted


def test_a_container_that_vanished_before_it_was_collected_is_recorded_so(engine, tmp_path):
    engine.program(IMAGE, run_until_stopped=True)
    client, paths = engine.client(), RunPaths(tmp_path / 'local')
    handle = run_container(client, make_spec(engine), detach=True, console=Console(quiet=True))
    client.api.remove_container(handle.ref, force=True)  # someone's docker rm, before anyone collected it
    with pytest.raises(PipelineError, match=f'the container of run {handle.run_id} vanished from the local engine '
                                            f'before it was collected'):
        local_backend(client).collect(handle, paths)
    assert paths.read_record(handle.run_id)['vanished'] is True
    rows = lifecycle.status(local_backend(client), Scope('Greeter', 'proj-a'), paths, console=Console(quiet=True))
    assert rows[0]['state'] == 'vanished before it was collected (its container was removed)'


def test_ended_runs_not_collected_are_said_safe_with_the_command_that_collects_them(engine, tmp_path):
    engine.program(IMAGE, stdout=b'hi\n')
    client, paths = engine.client(), RunPaths(tmp_path / 'local')
    first = run_container(client, make_spec(engine), detach=True, console=Console(quiet=True)).run_id
    followed = run_container(client, make_spec(engine), detach=True, console=Console(quiet=True)).run_id
    engine.finish()
    paths.dir.mkdir(parents=True)
    paths.out(followed).write_bytes(b'hi\n')  # its doit process saved the output as it came, then was killed
    out = io.StringIO()
    lifecycle.status(local_backend(client), Scope('Greeter', 'proj-a'), paths, console=Console(out=out))
    lines = out.getvalue().splitlines()
    assert lines[-2] == ('2 ended run(s) still on local: their output, return value and logs are safe there until '
                         'brought here. Bring them all: doit cleanup where=local days=0 (one: doit result job=Greeter '
                         f'where=local run_id={followed})')
    assert lines[-1] == (f'the doit process that followed {followed} ended before the run did (killed, or its '
                         f'connection lost): the run went on, and waits there')
    assert 'collected' not in '\n'.join(lines[-2:])  # the word of a STATE: scripts look for it
    assert first not in lines[-1]


def test_a_run_left_by_ctrl_c_on_purpose_is_not_said_to_have_lost_its_doit_process(engine, tmp_path):
    """on_interrupt = "detach": the run goes on by the user's choice; status lists it as waiting there, without
    the line for a doit process that was killed."""
    engine.program(IMAGE, stdout=b'hi\n')
    client, paths = engine.client(), RunPaths(tmp_path / 'local')
    backend = local_backend(client)
    handle = backend.start(backend.prepare(make_spec(engine), None, paths), make_spec(engine))
    paths.dir.mkdir(parents=True)
    paths.out(handle.run_id).write_bytes(b'hi\n')  # followed until Ctrl-C
    err = io.StringIO()
    lifecycle.interrupted(backend, handle, paths, 'detach', Console(err=err))
    assert f'Interrupted: run {handle.run_id} keeps running' in err.getvalue()
    engine.finish()
    out = io.StringIO()
    lifecycle.status(backend, Scope('Greeter', 'proj-a'), paths, console=Console(out=out))
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith('1 ended run(s) still on local')
    assert 'ended before the run did' not in out.getvalue()
