"""What a person sees of an image build: by default one progress line (the build step or pip line now
running) and a step note (``pip install ran``, ``pip layer from cache``); with a verbose console the whole
build log as it comes; after a failed build, always the whole log (a quiet console: nothing at all).

:class:`BuildOutput` takes the build's text lines one at a time (``add``) and keeps them all (``log``).
"""
from __future__ import annotations

import re

from tg_pipeline.console import CONSOLE, Console

STEP = re.compile(r'^Step \d+/\d+ : (.*)$')
COLOUR = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')  # pip's red ERROR lines in the engine's stream


def plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return COLOUR.sub('', text)
# pip lines worth a glance while the dependency layer builds
PIP_LINES = ('Collecting ', 'Downloading ', 'Building wheel', 'Installing collected packages', 'Successfully installed')
NOTE_CHARS = 70


class BuildOutput:
    """The build log of ``tag``: kept whole; printed live on ``console.out`` when the console is verbose; a
    progress line on ``console.err`` otherwise (nothing at all when it is quiet)."""

    def __init__(self, tag: str, console: Console = CONSOLE, host: str = 'local'):
        self.tag, self.console, self.host = tag, console, host
        self.log: list[str] = []
        self.dependency_step = False  # the step now running is the dependency layer's pip install
        self.dependencies = ''  # '' no such step seen; 'cached' or 'built'
        self.progress = console.replace(quiet=console.quiet or console.verbose).progress('build', unit='')

    def __enter__(self) -> 'BuildOutput':
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(failed=kind is not None)

    def add(self, text: str) -> None:
        """One piece of the engine's build stream (a line, or several)."""
        for line in text.rstrip('\n').split('\n'):
            self._line(line)
        if self.console.verbose:
            self.console.write(text if self.console.tty else plain(text))

    @property
    def prints_log(self) -> bool:
        """Whether this console shows the log of a failed build (live, or whole at the end)."""
        return not self.console.quiet

    def _line(self, line: str) -> None:
        line = plain(line)  # kept for the log printed at the end and for errors: no colour codes
        self.log.append(line)
        stripped = line.strip()
        step = STEP.match(stripped)
        if step:
            instruction = step.group(1)
            self.dependency_step = instruction.startswith('RUN pip install')
            self.progress.note(instruction[:NOTE_CHARS])
        elif self.dependency_step and stripped.startswith('---> Using cache'):
            self.dependencies = 'cached'
        elif self.dependency_step and stripped.startswith('---> Running in'):
            self.dependencies = 'built'
            self.progress.note('pip install')
        elif self.dependency_step and stripped.startswith(PIP_LINES):
            self.progress.note(stripped[:NOTE_CHARS])

    def close(self, failed: bool = False) -> None:
        """The build ended: a failed one prints its whole log (unless it was shown live, or the console is
        quiet); a good one notes whether pip ran or its layer came from the engine's cache."""
        self.progress.close(summary='')
        if failed:
            self.print_log()
            return
        if self.dependencies:
            self.console.step_note('pip install ran' if self.dependencies == 'built' else 'pip layer from cache')

    def print_log(self) -> None:
        """The whole log, once (not again when it was printed as it came)."""
        if self.console.verbose or not self.log:
            return
        where = '' if self.host == 'local' else f' (built on {self.host})'
        self.console.write(f'--- build log of {self.tag}{where} ---\n' + '\n'.join(self.log)
                           + '\n--- end of build log ---\n')

    def text(self) -> str:
        return '\n'.join(self.log)
