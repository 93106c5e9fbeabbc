"""The lines the doit console reporter prints for the steps (doit itself is wired in :func:`tg_pipeline.workflow.reporter.console_reporter`).

* A step that ran: ONE line when it ends, with its duration and what it noted
  (:meth:`tg_pipeline.console.Console.step_note`)::

      build_image:ExampleJob  0.31 s (code layer only)

* A step whose output is the point (a run, ``status``, ``logs``: doit does not capture its output) is
  announced when it starts, by its name alone; its output follows (a run ends with its own final line).
* Steps that were up to date: one short line per job, when the next step starts or at the end::

      -- up to date: serialize, sdist, dockerfile, build_image [ExampleJob]

* A task whose output is a document (``doit config``) gets no line at all. Failures are doit's own.
"""
from __future__ import annotations

import sys
import time

from tg_pipeline.errors import PipelineError, report

from tg_pipeline.console.units import format_duration
from tg_pipeline.console.progress import take_step_notes
from tg_pipeline.compat.doit import doit_command_line, doit_exit_code, exit_now, raised_in_uptodate_check

UP_TO_DATE = '-- up to date: '


def step_line(title: str, seconds: float, notes: list[str]) -> str:
    """``build_image:ExampleJob  0.31 s (code layer only)``."""
    text = f'{title}  {format_duration(seconds)}'
    return text + (f' ({"; ".join(notes)})' if notes else '')


def up_to_date_line(titles: list[str]) -> str:
    """``-- up to date: serialize, sdist [ExampleJob]`` for steps of one job (``STEP:JOB`` titles)."""
    job = titles[0].partition(':')[2]
    steps = [t.partition(':')[0] if job else t for t in titles]
    return UP_TO_DATE + ', '.join(steps) + (f' [{job}]' if job else '')


def up_to_date_steps(output: str) -> set[str]:
    """The ``STEP:JOB`` titles that an output says were up to date (the reverse of :func:`up_to_date_line`)."""
    found = set()
    for line in output.splitlines():
        if line.startswith(UP_TO_DATE):
            text = line[len(UP_TO_DATE):]
            job = text.rpartition(' [')[2].rstrip(']') if text.endswith(']') else ''
            steps = text.rpartition(' [')[0] if job else text
            found |= {f'{s}:{job}' if job else s for s in steps.split(', ')}
    return found


def ran_steps(output: str) -> set[str]:
    """The step titles that an output says ran (their end line, or the start line of a streamed step)."""
    found = set()
    for line in output.splitlines():
        title, _, rest = line.partition('  ')
        if rest[:1].isdigit() and ' ' not in title and not line.startswith('-- '):
            found.add(title)
    return found


class StepLines:
    """What the reporter writes, through ``write(text)``; ``clock``: seconds, monotonic."""

    def __init__(self, write, clock=time.monotonic):
        self.write, self.clock = write, clock
        self.started_at: dict[str, float] = {}
        self.pending: list[str] = []  # up-to-date titles of one job, not yet written

    def flush(self) -> None:
        if self.pending:
            self.write(up_to_date_line(self.pending) + '\n')
            self.pending = []

    def up_to_date(self, title: str) -> None:
        if self.pending and self.pending[0].partition(':')[2] != title.partition(':')[2]:
            self.flush()
        self.pending.append(title)

    def started(self, title: str, streamed: bool, document: bool) -> None:
        self.flush()
        take_step_notes()  # what an earlier step left unsaid is not this one's
        self.started_at[title] = self.clock()
        if streamed and not document:
            self.write(f'{title}\n')

    def succeeded(self, title: str, streamed: bool, document: bool) -> None:
        started = self.started_at.pop(title, None)
        notes = take_step_notes()
        if streamed or document or started is None:
            return
        self.write(step_line(title, self.clock() - started, notes) + '\n')

    def failed(self, title: str) -> None:
        self.started_at.pop(title, None)
        take_step_notes()
        self.flush()


def kind(task) -> dict:
    """A task's kind of output: streamed (doit does not capture it), a document (``doit config``)."""
    return {'streamed': getattr(getattr(task, 'io', None), 'capture', True) is False,
            'document': bool((getattr(task, 'meta', None) or {}).get('document'))}


def shown(task) -> bool:
    return bool(task.actions) and task.name[0] != '_'


def console_reporter():
    """doit's console reporter, printing the lines of :mod:`tg_pipeline.workflow.reporter`: one line per step that ran,
    with its duration; one line per job for the steps that were up to date; nothing for a task printing a
    document (``meta={'document': True}``: ``doit config > settings.toml``); failures as doit prints them.
    A task whose output doit does not capture (``io={'capture': False}``: runs, ``status``...) is named when
    it starts instead."""
    from doit.reporter import ConsoleReporter

    class Reporter(ConsoleReporter):
        def __init__(self, outstream, options):
            super().__init__(outstream, options)
            self.lines = StepLines(self._write_now)
            self.failed = []
            self.checking = ''  # the step whose up-to-date check ran last

        def _write_now(self, text):
            self.write(text)
            flush = getattr(self.outstream, 'flush', None)
            if flush:
                flush()

        def execute_task(self, task):
            if shown(task):
                self.lines.started(task.title(), **kind(task))

        def add_success(self, task):
            if shown(task):
                self.lines.succeeded(task.title(), **kind(task))

        def add_failure(self, task, fail):
            self.lines.failed(task.title())
            self.failed.append(fail)  # also those it does not print (report=False: said as ERROR/TIP already)
            super().add_failure(task, fail)

        def skip_uptodate(self, task):
            if task.name[0] != '_':
                self.lines.up_to_date(task.title())

        def skip_ignore(self, task):
            self.lines.flush()
            super().skip_ignore(task)

        def get_status(self, task):
            self.checking = task.title()  # its up-to-date check comes next
            super().get_status(task)

        def complete_run(self):
            # doit's runner calls this in a `finally`: an exception in flight (an up-to-date check's, a hook's) is
            # doit's run ending, and must end it with an error, never with exit 0
            failure = sys.exc_info()[1]
            try:
                self.lines.flush()
                super().complete_run()
            except Exception as e:  # noqa: BLE001 - said as an ERROR by end_run
                failure = failure or e
            end_run(self, failure)
    return Reporter


def end_run(reporter, failure: BaseException | None) -> None:
    """The end of doit's run, for the doit command: ``failure`` (an exception that ended it outside any task) said
    as one ERROR paragraph, then the process ends with doit's exit code, or :data:`STOPPED` after such a failure."""
    if failure is not None and not isinstance(failure, (KeyboardInterrupt, SystemExit)):
        report(stopped_by(failure, reporter.checking if raised_in_uptodate_check(failure) else ''), sys.stderr)
    if not doit_command_line():
        return
    flush = getattr(reporter.outstream, 'flush', None)
    if flush:
        try:
            flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say there
            pass
    exit_now(STOPPED if failure is not None else doit_exit_code(reporter.failed, reporter.runtime_errors))


STOPPED = 3  # doit's own code for a run that stopped on an error of its own (not a task's failure)


def stopped_by(error: BaseException, checking: str = '') -> PipelineError:
    """The ERROR for an exception that ended doit's run outside any task's action (an up-to-date check, a
    reporter's hook): which step was being checked, what was raised, and how to see where."""
    if isinstance(error, PipelineError):
        return error
    where = f'checking whether {checking} is up to date' if checking else 'doit stopped'
    return PipelineError(f'{where} failed: {type(error).__name__}: {error}',
                         hint='run the command again with TG_PIPELINE_DEBUG=1 to see where (and report it: a file '
                              'under build/ that tg_pipeline cannot read counts as missing, so this is a bug)')
