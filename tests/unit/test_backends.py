"""Both kinds of run offer everything the lifecycle uses of them: the Backend protocol, complete."""
import typing

from fakes.engine import FakeEngine
from tg_pipeline.hosts.host import Host
from tg_pipeline.runs import backend_for
from tg_pipeline.runs.backend import Backend
from tg_pipeline.runs.container import ContainerBackend
from tg_pipeline.runs.swarm import SwarmBackend


def test_container_and_swarm_runs_are_backends():
    engine = FakeEngine()
    container = backend_for(Host('local', 'local', engine))
    swarm = backend_for(Host('swarm', 'swarm local', engine))
    assert isinstance(container, ContainerBackend) and isinstance(swarm, SwarmBackend)
    for backend in (container, swarm):
        assert isinstance(backend, Backend)
        missing = [name for name in typing.get_type_hints(Backend) if not hasattr(backend, name)]
        assert missing == []


def test_only_a_swarm_run_refuses_exec():
    import pytest
    from tg_pipeline.errors import SwarmError
    engine = FakeEngine()
    assert backend_for(Host('local', 'local', engine)).refuse_reach('exec', 'Train') is None
    with pytest.raises(SwarmError, match='exec is not supported for swarm runs'):
        backend_for(Host('swarm', 'swarm local', engine)).refuse_reach('exec', 'Train')
