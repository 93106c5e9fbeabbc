"""The Backend protocol: what a kind of run (container, swarm service) offers the lifecycle, and how a
lost connection to a remote host is said while a run is watched."""
from __future__ import annotations
import contextlib
from typing import Protocol, runtime_checkable

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError, RemoteError
from tg_pipeline.runs.model import RunHandle, RunResult, RunSpec


@contextlib.contextmanager
def lost_connection_means_detached(remote: bool, host: str, handle: 'RunHandle', going_on: str, why=None):
    """Around watching a run on a remote host: a connection that breaks (not one of our errors) becomes a
    RemoteError saying the run goes on there and how to re-attach; ``why()`` may know the cause (e.g. the
    keepalive watchdog found the connection dead)."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as e:
        if not remote:
            from tg_pipeline.compat.docker import TRANSPORT_ERRORS
            if not isinstance(e, TRANSPORT_ERRORS):
                raise
            raise PipelineError(f'the Docker engine of {host} stopped answering during run {handle.run_id} '
                                f'({type(e).__name__}): it was stopped or restarted, which stops its containers too',
                                hint=f'once the engine answers again, see how the run ended: doit result job='
                                     f'{handle.job} where={handle.where} run_id={handle.run_id}') from e
        reason = (why() if why else None) or f'{type(e).__name__}: {e}'
        raise RemoteError(f'the connection to {host} was lost during run {handle.run_id} ({reason}); {going_on}',
                          hint=f're-attach and see its whole output: {handle.commands()}') from e  # (shown with
    # TG_PIPELINE_DEBUG=1 only: what broke, where)


@runtime_checkable
class Backend(Protocol):
    """One kind of run on one host: everything :mod:`tg_pipeline.runs.lifecycle` uses of it.

    Implemented by :class:`~tg_pipeline.runs.container.ContainerBackend` (a container on one engine) and
    :class:`~tg_pipeline.runs.swarm.SwarmBackend` (a replicated-job service on a swarm manager)."""
    where: str  # local | remote | swarm: also the folder under build/JOB/runs/
    host: str  # the host for people: 'local', 'remote user@host:22', 'swarm local'
    remote: bool  # the engine is reached over SSH
    kind: str  # what a run is there, for people: 'container', 'swarm service'
    noun: str  # 'run', 'swarm run'
    streams_to_files: bool  # watching a run writes its output files here as it comes
    announce_attached: bool  # an attached run says that it started (a swarm's tasks may wait to be placed)
    stop_takes_output: bool  # stopping removes what its owner has not collected: only its project stops it

    def prepare(self, spec: RunSpec, environ=None, paths=None) -> RunHandle:
        """Everything before the run exists on the host starts (container: created, not started)."""

    def start(self, handle: RunHandle, spec: RunSpec, environ=None) -> RunHandle:
        """Start the prepared run."""

    def start_line(self, handle: RunHandle) -> str:
        """The line that says a run started (detached, or announced)."""

    def refresh(self, handle: RunHandle) -> RunHandle:
        """The handle with the run's state as the host tells it now."""

    def ended_at(self, handle: RunHandle):
        """When the run ended, by the host's clock (an aware datetime), or None."""

    def watch(self, handle: RunHandle, sink) -> None:
        """Stream the run's output into ``sink`` (an :class:`~tg_pipeline.runs.output.OutputSink`) until it ends."""

    def find(self, job: str | None, project: str | None) -> dict[str, RunHandle]:
        """run_id -> handle of the runs on this host (of ``job`` / ``project`` when given)."""

    def log_chunks(self, handle: RunHandle, stream: int):
        """The bytes the run printed so far on ``stream`` (1 stdout, 2 stderr), from the first, in chunks."""

    def stop(self, handle: RunHandle) -> None:
        """Stop the running run (what it left stays on the host until collected)."""

    def collect(self, handle: RunHandle, paths, logs_saved: bool = True) -> RunResult:
        """An ended (or stopped) run: its files to ``paths`` (a RunPaths), its record written, the host cleaned.
        ``logs_saved``: its output files were written here while it was watched."""

    def discard(self, handle: RunHandle) -> None:
        """Remove it from the host without collecting anything."""

    def refuse_reach(self, what: str, job: str, run_id: str = '') -> None:
        """Raise the error that says ``what`` (exec, forward) cannot reach this kind of run; nothing when it can."""

    def exec(self, handle: RunHandle, command: str, console: Console = CONSOLE) -> int:
        """Run ``command`` (a shell command line) in the running run; stream its output to ``console``; its exit
        code."""

    def forward(self, handle: RunHandle, port: int, local_port: int, console: Console = CONSOLE) -> None:
        """Forward ``local_port`` here to ``port`` of the running run, until Ctrl-C or the run's end."""
