"""One root exception; every subclass carries the data a person needs to act.

Each error renders as an ``ERROR:`` paragraph and, when we know the fix, a
``TIP:`` line. Internals' tracebacks are not shown unless ``TG_PIPELINE_DEBUG``
is set (see :func:`report`).
"""
from __future__ import annotations

import os
import sys
from typing import Any

TAIL_LINES = 30


def tail(text: str | bytes | None, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a command's output, decoded leniently."""
    if text is None:
        return ''
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    return '\n'.join(text.rstrip('\n').splitlines()[-lines:])


class PipelineError(Exception):
    """Root of every error tg_pipeline raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def render(self) -> str:
        text = f'ERROR: {self.message}'
        if self.hint:
            text += f'\nTIP: {self.hint}'
        return text


class ConfigError(PipelineError):
    """pipeline.toml (or a command-line override) is wrong."""

    def __init__(self, problem: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None, hint: str | None = None):
        prefix = where(file, key, line)
        super().__init__(f'{prefix}: {problem}' if prefix else problem, hint)
        self.file, self.key, self.line, self.problem = file, key, line, problem


def where(file: str | None, key: str | None, line: int | None = None) -> str:
    """``FILE:LINE, key 'KEY'`` (what is known of it), or ''."""
    parts = []
    if file:
        parts.append(str(file) + (f':{line}' if line else ''))
    if key:
        parts.append(f'key {key!r}')
    return ', '.join(parts)


class InvalidName(ConfigError):
    """A name or version that Docker, pip or the build folder cannot take; ``proposal`` is a valid one."""

    def __init__(self, problem: str, *, setting: str, value: str, reason: str, proposal: str, **where):
        super().__init__(problem, **where)
        self.setting, self.value, self.reason, self.proposal = setting, value, reason, proposal


class PackagingError(PipelineError):
    """The job cannot be serialized or packaged as it is."""


class JobCodeError(PackagingError):
    """The user's own code failed while the job was built here (its module's import, its factory), or the
    factory built no job. The message carries the user's frames only."""

    def __init__(self, problem: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None, hint: str | None = None):
        prefix = where(file, key, line)
        super().__init__(f'{prefix}: {problem}' if prefix else problem, hint)
        self.file, self.key, self.line, self.problem = file, key, line, problem


class CommandError(PipelineError):
    """A step ran something that failed: carries the command, exit code and output tail."""

    def __init__(self, message: str, *, command: str | None = None, exit_code: int | None = None,
                 output: str | bytes | None = None, hint: str | None = None):
        self.command, self.exit_code, self.output_tail = command, exit_code, tail(output)
        text = message
        if command:
            text += f'\n  command: {command}'
        if exit_code is not None:
            text += f'\n  exit code: {exit_code}'
        if self.output_tail:
            text += '\n  last output:\n' + '\n'.join('    ' + l for l in self.output_tail.splitlines())
        super().__init__(text, hint)


class DockerUnavailable(PipelineError):
    """No Docker engine answers where we were told to look."""


class BuildError(CommandError):
    """``docker build`` failed."""
    build_log: str | None = None  # the build's whole log, where the failure was read from it


class JobFailed(CommandError):
    """The job itself failed (raised, or its container exited non-zero)."""
    result: Any = None  # the failed run's RunResult, when it ran (tg_pipeline.runs.lifecycle.judged)

    def __init__(self, message: str, *, exit_code: int | None = None, output: str | bytes | None = None,
                 remote_traceback: str | None = None, command: str | None = None, hint: str | None = None):
        super().__init__(message, command=command, exit_code=exit_code, output=output, hint=hint)
        self.remote_traceback = remote_traceback


class RemoteError(CommandError):
    """Something on the remote host (SSH, its Docker engine) failed."""


class SSHError(RemoteError):
    """SSH login to the remote host failed."""


class HostKeyError(SSHError):
    """The remote host's key is unknown (or changed) and we refuse to guess."""


class ResultNotLoadable(PipelineError):
    """A run ended well and kept its return value (``path``, result.pkl), but this Python cannot load it: it
    needs ``module`` (``needs``: the class), which is not installed here or differs from the image's. The run
    itself succeeded; ``summary`` is the one line that says so, ``hint`` how to load the value here."""

    def __init__(self, summary: str, *, path, size: int, module: str, needs: str, hint: str):
        super().__init__(f'the return value {summary}', hint)
        self.summary, self.path, self.size, self.module, self.needs = summary, path, size, module, needs


class RegistryError(CommandError):
    """Pushing to or pulling from the image registry failed."""


def report(error: BaseException, stream=None) -> None:
    """Print an error the way a person wants to read it: ERROR + TIP, no internals."""
    stream = stream or sys.stderr
    if isinstance(error, PipelineError):
        print(error.render(), file=stream, flush=True)
    else:
        print(f'ERROR: {type(error).__name__}: {error}', file=stream, flush=True)
    if os.environ.get('TG_PIPELINE_DEBUG') and error.__traceback__ is not None:
        import traceback
        traceback.print_exception(type(error), error, error.__traceback__, file=stream)


class SwarmError(PipelineError):
    """The swarm cannot run this (no swarm, nothing can host the tasks, ...)."""
