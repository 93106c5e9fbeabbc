"""Step 6: runs. One backend protocol (base), container and swarm runs, and their lifecycle, written once."""
from __future__ import annotations

import contextlib

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tg_pipeline.hosts.host import Host


def backend_for(host: Host, config=None, console=None, detach: bool = False):
    """The run backend for this host: swarm runs on a swarm manager; on any other engine, container runs (their
    GPUs handed out) and sweeps, each variant in its own container (:mod:`.hosted`). ``console``: where a run
    step says what it waits for; ``detach``: a sweep started now is left to a process of its own here."""
    if host.where == 'swarm':
        from tg_pipeline.runs.swarm import SwarmBackend
        return SwarmBackend(host, config.swarm if config is not None else None)
    from tg_pipeline.console import CONSOLE
    from tg_pipeline.runs.hosted import HostBackend
    return HostBackend(host, config, console or CONSOLE, detach)


@contextlib.contextmanager
def backend_on(config, where: str, host: Host | None = None):
    """The run backend for ``where`` (local, remote, swarm) of this configuration, on its host: ``host`` (left
    open), or one opened here and closed on exit."""
    from tg_pipeline.hosts.host import open_host, said_as_lost
    if host is not None:
        with said_as_lost(host):
            yield backend_for(host, config)
        return
    with open_host(config, where) as opened:
        yield backend_for(opened, config)
