"""The Console (tg_pipeline.console): streams resolved when a line is written, quiet and verbose, its progress
lines and step notes."""
import io
import sys

import pytest

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.console.progress import take_step_notes


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def no_notes():
    take_step_notes()
    yield
    take_step_notes()


def test_the_process_console_writes_to_the_streams_of_the_moment(capsys):
    CONSOLE.print('a line', 2)
    CONSOLE.print('on err', err=True)
    CONSOLE.write('raw')
    assert capsys.readouterr() == ('a line 2\nraw', 'on err\n')
    swapped = io.StringIO()
    saved, sys.stdout = sys.stdout, swapped
    try:
        CONSOLE.print('redirected')
    finally:
        sys.stdout = saved
    assert swapped.getvalue() == 'redirected\n'


def test_given_streams_and_quiet():
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err)
    console.print('shown')
    quiet = console.replace(quiet=True)
    quiet.print('hidden')
    quiet.write('hidden', err=True)
    quiet.warn('Interrupted: always shown')
    assert (out.getvalue(), err.getvalue()) == ('shown\n', 'Interrupted: always shown\n')
    assert (console.quiet, quiet.quiet, quiet.out is out) == (False, True, True)


def test_replace_keeps_the_rest_and_refuses_what_a_console_has_not():
    console = Console(verbose=True, tty=True)
    assert console.replace(quiet=True).verbose and console.replace(quiet=True).tty
    with pytest.raises(TypeError):
        console.replace(loud=True)


def test_tty_is_the_error_stream_s_unless_given():
    assert Console(err=Terminal()).tty and not Console(err=io.StringIO()).tty
    assert not Console(err=Terminal(), tty=False).tty


def test_progress_goes_to_err_and_a_quiet_console_notes_nothing():
    err = Terminal()
    with Console(err=err).progress('push', total=10) as bar:
        bar.update(5)
    assert err.getvalue().startswith('\rpush  5 B / 10 B  50%')
    assert [note.split(' in ')[0] for note in take_step_notes()] == ['5 B']
    quiet = Terminal()
    with Console(quiet=True, err=quiet).progress('push', total=10) as bar:
        bar.update(5)
    Console(quiet=True).step_note('not kept')
    assert quiet.getvalue() == '' and take_step_notes() == []
    Console().step_note('kept')
    assert take_step_notes() == ['kept']


def workflow_context(tmp_path, verbose=0, **api):
    """A Context as dodo.py makes it (``api`` empty) or as the Python API does (capture, its console given)."""
    from tg_pipeline import config
    from tg_pipeline.workflow.context import Context
    path = tmp_path / 'pipeline.toml'
    path.write_text(f'[docker]\nverbose = {verbose}\n\n[jobs.Train]\nfactory = "jobs.train:Train"\n')
    settings = config.load(path, environ={})
    return Context(settings, {}, capture=True, console=Console(**api)) if api else Context(settings, {})


def test_the_workflow_console_verbose_from_the_config_and_the_python_api_s_consoles(tmp_path):
    cli = workflow_context(tmp_path, verbose=1)
    assert cli.console.verbose and not cli.console.quiet
    assert not any(c.quiet for c in (cli.run_console('swarm'), cli.delivery_console(), cli.outcome_console()))
    silent = workflow_context(tmp_path, quiet=True)  # Containering.silent: the build steps print nothing
    assert silent.console.quiet and silent.delivery_console().quiet
    assert not silent.run_console('local').quiet  # the job's own output still shows
    assert silent.run_console('swarm').quiet  # a sweep's caller gets its values
    shown = workflow_context(tmp_path, quiet=False)
    assert not shown.console.quiet and shown.delivery_console().quiet and not shown.run_console('remote').quiet
