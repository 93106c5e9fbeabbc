"""How an ended run is judged and remembered (``runs/records.py``): the exit status from the run folder's
exit.json or the container's code, the JobFailed a failure raises, and the record saved in RunPaths."""
import json

import pytest

from tg_pipeline.errors import JobFailed
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs.model import RunResult
from tg_pipeline.runs.records import engine_restarted_under, exit_status, failure, saved_result, state_of_record

TRACE = 'Traceback (most recent call last):\n  File "jobs.py", line 9, in run\nValueError: bad input\n'


def run_dir_with(tmp_path, **files):
    folder = tmp_path / 'run'
    folder.mkdir()
    for name, text in files.items():
        (folder / name.replace('_', '.')).write_text(text)
    return folder


@pytest.mark.parametrize('recorded, container, expected', [
    (0, 0, (0, None)),
    (3, 1, (3, None)),  # sys.exit(3): the job's own code
    (1, 137, (1, None)),  # killed while it sent its folder back: the job had ended already
    (130, 130, (130, None)),  # KeyboardInterrupt in the job: an exit code, not a signal
])
def test_the_jobs_own_exit_code_wins_over_the_containers(tmp_path, recorded, container, expected):
    folder = run_dir_with(tmp_path, exit_json=json.dumps({'exit_code': recorded, 'reason': 'x'}))
    assert exit_status(container, folder) == expected


@pytest.mark.parametrize('container, expected', [
    (137, (137, 9)), (143, (143, 15)), (129, (129, 1)), (128, (128, None)), (2, (2, None)), (0, (0, None)),
    (None, (None, None)),
])
def test_without_exit_json_a_code_above_128_means_a_signal(tmp_path, container, expected):
    assert exit_status(container, tmp_path) == expected  # a run folder without exit.json
    assert exit_status(container, None) == expected  # no run folder at all


@pytest.mark.parametrize('text', ['not json', '{"exit_code": "3"}', '{"reason": "ok"}', ''])
def test_an_unreadable_exit_json_leaves_the_containers_code(tmp_path, text):
    assert exit_status(137, run_dir_with(tmp_path, exit_json=text)) == (137, 9)


def result(**changes) -> RunResult:
    values = dict(run_id='r1', where='local', host='remote u@h:22', job='Greeter', exit_code=1,
                  output='first line\nlast words\n')
    return RunResult(**{**values, **changes})


def test_a_successful_run_is_no_failure():
    assert failure(result(exit_code=0)) is None


def test_oom_failure_names_the_limit_and_how_to_raise_it():
    problem = failure(result(exit_code=137, oom_killed=True, signal=9, memory_gb=0.5))
    assert isinstance(problem, JobFailed) and problem.exit_code == 137
    assert problem.message.startswith('job Greeter was killed for exceeding its memory limit of 0.5 GB '
                                      '(remote u@h:22 run)')
    assert 'memory_gb in [run] or [jobs.Greeter]' in problem.hint
    assert problem.output_tail == 'first line\nlast words'


def test_signal_failure_names_the_signal():
    problem = failure(result(exit_code=143, signal=15))
    assert problem.message.startswith('job Greeter was killed by signal 15 (remote u@h:22 run)')
    assert problem.exit_code == 143 and problem.remote_traceback is None


def test_plain_failure_quotes_the_jobs_traceback_only():
    """Not streamed (doit result, later): the traceback is quoted; the output is not."""
    problem = failure(result(exit_code=1, traceback=TRACE))
    assert problem.message.startswith('job Greeter failed (remote u@h:22 run): ValueError: bad input\n  exit code: 1')
    assert problem.remote_traceback == TRACE and problem.output_tail == TRACE.rstrip('\n')
    assert 'first line' not in problem.message


def test_a_streamed_failure_sums_the_traceback_up_in_one_line():
    trace = 'Traceback (most recent call last):\n  jobs/train.py:42, in run\n    raise ValueError(x)\nValueError: bad\n'
    problem = failure(result(exit_code=1, traceback=trace), streamed=True)
    assert problem.message == 'job Greeter failed (remote u@h:22 run): ValueError: bad at jobs/train.py:42\n' \
                              '  exit code: 1'
    assert problem.remote_traceback == trace and problem.output_tail == ''


def test_a_job_that_could_not_be_built_is_its_paragraph_with_the_host():
    paragraph = "ERROR: pipeline.toml:5, key 'jobs.Greeter.factory': factory 'jobs.g:G': module 'jobs.g' has no " \
                "'G'\nTIP: check the class or function name defined in jobs/g.py\n"
    problem = failure(result(exit_code=1, traceback=paragraph), streamed=True)
    assert problem.render() == ("ERROR: job Greeter could not start (remote u@h:22 run): pipeline.toml:5, key "
                                "'jobs.Greeter.factory': factory 'jobs.g:G': module 'jobs.g' has no 'G'\n"
                                "  exit code: 1\nTIP: check the class or function name defined in jobs/g.py")


def test_plain_failure_without_traceback_quotes_the_end_of_the_output():
    problem = failure(result(exit_code=2))
    assert problem.remote_traceback is None and problem.output_tail == 'first line\nlast words'


def test_variant_failures_are_named_one_by_one():
    variants = [{'variant': 0, 'label': 'lr=0.1', 'state': 'complete', 'exit_code': 0, 'error': '', 'ok': True},
                {'variant': 1, 'label': 'lr=1', 'state': 'failed', 'exit_code': 1, 'ok': False,
                 'error': 'task: non-zero exit (1)', 'traceback': TRACE},
                {'variant': 2, 'label': 'lr=9', 'state': 'rejected', 'exit_code': None, 'ok': False,
                 'error': 'no suitable node'}]
    problem = failure(result(exit_code=None, variants=variants, where='swarm'))  # a sweep on one host: 'sweep run'
    assert problem.message.startswith('2 variant(s) of job Greeter failed in swarm run r1 (remote u@h:22): '
                                      'variant 1 (lr=1): failed exit 1, variant 2 (lr=9): rejected (no suitable '
                                      'node)')
    assert problem.exit_code == 1 and problem.remote_traceback == TRACE
    assert 'doit status job=Greeter where=swarm run_id=r1' in problem.hint


def test_saved_result_reads_the_record_the_run_folder_and_the_output_tail(tmp_path):
    paths = RunPaths(tmp_path / 'local')
    paths.write_record('r1', {'run_id': 'r1', 'job': 'Greeter', 'module': 'greeter__0_0_1', 'exit_code': 1,
                              'oom_killed': False, 'memory_gb': 2, 'signal': None})
    paths.run_dir('r1').mkdir()
    (paths.run_dir('r1') / 'traceback.txt').write_text(TRACE)
    paths.out('r1').write_bytes(b'x' * 70000 + b'\n\xff the end\n')
    saved = saved_result(paths, 'r1', 'local', 'local')
    assert (saved.job, saved.module, saved.exit_code, saved.memory_gb) == ('Greeter', 'greeter__0_0_1', 1, 2)
    assert saved.traceback == TRACE and saved.run_dir == paths.run_dir('r1') and not saved.ok
    assert len(saved.output.encode()) < 65536 + 8 and saved.output.endswith('\n\ufffd the end\n')
    assert saved_result(paths, 'r2', 'local', 'local') is None


def test_state_of_a_record():
    assert state_of_record({'exit_code': 0}) == 'collected, exited 0'
    assert state_of_record({'exit_code': 137, 'oom_killed': True}) == 'collected, exited 137 (OOM killed)'
    assert state_of_record({}) == 'collected, exited ?'
    variants = [{'state': 'complete', 'exit_code': 0}, {'ok': False}, {'ok': True}]
    assert state_of_record({'variants': variants}) == 'collected, 2/3 variants succeeded'


def test_a_run_stopped_by_doit_stop_says_who_stopped_it_and_when(tmp_path):
    import datetime
    from tg_pipeline.paths import RunPaths
    from tg_pipeline.runs.records import note_stopped, saved_result, state_of_record
    paths = RunPaths(tmp_path / 'runs')
    paths.write_record('r1', {'run_id': 'r1', 'job': 'Greeter', 'exit_code': 143, 'signal': 15})
    stopped = result(exit_code=143, signal=15)
    stopped.run_id = 'r1'
    at = datetime.datetime(2026, 12, 7, 1, 50, 3, tzinfo=datetime.timezone.utc)
    note_stopped(paths, stopped, 'alice', now=at)
    shown = at.astimezone().strftime('%Y-%m-%d %H:%M:%S')
    problem = failure(saved_result(paths, 'r1', 'remote', 'remote u@h:22'))
    assert problem.message.startswith(f'job Greeter was stopped by alice at {shown} (doit stop; remote u@h:22 run)')
    assert 'signal' not in problem.message and problem.exit_code == 143
    assert state_of_record(paths.read_record('r1')) == f'collected, stopped by alice at {shown}'
    assert failure(result(exit_code=143, signal=15)).message.startswith('job Greeter was killed by signal 15')


def test_the_engine_is_asked_when_it_started_only_about_a_run_a_signal_ended():
    """The question is a request to the engine (over SSH: a round trip) that only a signal's end needs."""
    import datetime
    asked = []
    engine_start = datetime.datetime(2026, 1, 1, 12, 0, 30, tzinfo=datetime.timezone.utc)

    def started():
        asked.append(1)
        return engine_start
    state = {'StartedAt': '2026-01-01T12:00:00Z', 'FinishedAt': '2026-01-01T12:00:25Z', 'ExitCode': 0}
    assert engine_restarted_under(state, started) == '' and asked == []
    killed = {**state, 'ExitCode': 143}
    assert engine_restarted_under(killed, started) == engine_start.isoformat() and asked == [1]
    assert engine_restarted_under({**killed, 'StartedAt': '2026-01-01T12:00:40Z'}, started) == ''  # after the start
    assert engine_restarted_under(killed, lambda: None) == ''  # unknown: not said
