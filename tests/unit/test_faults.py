"""Faults that mislead, with no engine: a job's sys.exit is the status of its attached run (in the doit
process), and doit goes on to the next task. (On the engines: tests/integration/test_faults.py.)"""


def assert_exit_status_reported(outcome, code: int, how: str) -> None:
    """A job's sys.exit(code) is the doit command's failure (one ERROR paragraph, no traceback), exit 0 a success."""
    if code:
        assert outcome.returncode != 0, how
        assert f'ERROR: job SysExit exited with status {code}: it called sys.exit' in outcome.stderr
        assert f'exit code: {code}' in outcome.stderr
        assert 'Traceback' not in outcome.stderr
    else:
        assert outcome.returncode == 0, outcome.stderr
        assert 'Result: None' in outcome.stdout


def test_the_jobs_exit_status_is_the_attached_runs(project):
    for how, code in (('7', 7), ('none', 0)):
        # a second task after it: a job's sys.exit must not end doit itself
        run = project.doit('run_attached:SysExit', 'serialize:ExampleJob', env={'EXIT_WITH': how}, check=False)
        assert f'exiting with {how}' in run.stdout
        assert_exit_status_reported(run, code, how)
        if not code:
            assert 'serialize:ExampleJob' in run.stdout  # doit went on to the next task
