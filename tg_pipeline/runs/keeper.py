"""The keeper of a detached sweep: ``python -m tg_pipeline.runs.keeper``, a process of its own here, started by
:func:`tg_pipeline.runs.hosted.spawn_keeper` when a sweep on one host is left running (``detach=1``, or Ctrl-C
with ``on_interrupt = "detach"``) while some of its variants wait for a place (``max_concurrent``) or for GPUs.

It reads what it needs (the configuration, to reach the host again; the run's spec; the sweep's run id and how
many variants at a time) from its standard input, takes the sweep's driver lock (the process that started the
sweep lets go of it), starts the queued variants as places free up, and ends once each has started, or when
the sweep is stopped (``doit stop``). Its lines go to ``RUN_ID/keeper.log`` beside the sweep's runs. Collecting
stays with the commands that collect a detached run (``doit result``, ``logs follow=1``, ``stop``, ``cleanup``).
"""
from __future__ import annotations

import pickle
import sys


def main() -> int:
    from tg_pipeline.console import Console
    from tg_pipeline.errors import PipelineError
    from tg_pipeline.hosts.host import open_host
    from tg_pipeline.runs.hosted import HostBackend
    from tg_pipeline.runs.sweep import Driver
    data = pickle.load(sys.stdin.buffer)
    spec, run_id = data['spec'], data['run_id']
    console = Console(verbose=data.get('verbose', False))
    try:
        with open_host(data['config'], data['where']) as host:
            backend = HostBackend(host, data['config'], console)
            backend.hold_driver(spec.job, run_id)
            console.print(f'Keeping sweep run {run_id} going: its queued variants start as places free up')
            Driver(backend, spec, run_id, data['limit'], None, console).keep_starting()
            console.print(f'Every variant of sweep run {run_id} has started (or the sweep was stopped)')
    except PipelineError as e:
        console.print(e.render())
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
