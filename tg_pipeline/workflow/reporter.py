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

import time

from tg_pipeline.console.units import format_duration
from tg_pipeline.console.progress import take_step_notes
from tg_pipeline.compat.doit import doit_command_line, doit_exit_code, exit_now

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


def console_reporter():
    """doit's console reporter, printing the lines of :mod:`tg_pipeline.workflow.reporter`: one line per step that ran,
    with its duration; one line per job for the steps that were up to date; nothing for a task printing a
    document (``meta={'document': True}``: ``doit config > settings.toml``); failures as doit prints them.
    A task whose output doit does not capture (``io={'capture': False}``: runs, ``status``...) is named when
    it starts instead."""
    from doit.reporter import ConsoleReporter


    def kind(task) -> dict:
        return {'streamed': getattr(getattr(task, 'io', None), 'capture', True) is False,
                'document': bool((getattr(task, 'meta', None) or {}).get('document'))}

    def shown(task) -> bool:
        return bool(task.actions) and task.name[0] != '_'

    class Reporter(ConsoleReporter):
        def __init__(self, outstream, options):
            super().__init__(outstream, options)
            self.lines = StepLines(self._write_now)
            self.failed = []

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

        def complete_run(self):
            self.lines.flush()
            super().complete_run()
            if doit_command_line():
                flush = getattr(self.outstream, 'flush', None)
                if flush:
                    flush()
                exit_now(doit_exit_code(self.failed, self.runtime_errors))
    return Reporter
