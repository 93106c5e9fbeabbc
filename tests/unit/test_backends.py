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


def test_every_backend_takes_what_the_protocol_passes():
    """The lifecycle calls a backend as the protocol declares (``prepare(spec, environ, paths)``): each
    implementation, wrappers included, takes those parameters in that order."""
    import inspect
    from tg_pipeline.runs.hosted import HostBackend
    from tg_pipeline.workflow.recording import Recording
    methods = [n for n, v in vars(Backend).items() if inspect.isfunction(v) and not n.startswith('_')]
    assert 'prepare' in methods and 'collect' in methods
    wrong = []
    for kind in (ContainerBackend, SwarmBackend, HostBackend, Recording):
        for name in methods:
            own = getattr(kind, name, None)
            if own is None or not inspect.isfunction(own):
                continue  # passed through (Recording's __getattr__) or inherited as is
            wanted = [p for p in inspect.signature(getattr(Backend, name)).parameters if p != 'self']
            given = [p for p in inspect.signature(own).parameters if p != 'self']  # a staticmethod has none
            if given[:len(wanted)] != wanted:
                wrong.append(f'{kind.__name__}.{name}{inspect.signature(own)}')
    assert wrong == []


def test_the_steps_of_one_command_share_each_host_and_a_lost_one_is_opened_again(monkeypatch, tmp_path):
    """`doit status where=remote` over every job: one connection, one first request, not one per job."""
    import pytest
    from tg_pipeline import config
    from tg_pipeline.errors import RemoteError
    from tg_pipeline.hosts import host as hosts
    from tg_pipeline.runs import backend_on
    from tg_pipeline.workflow.context import Context
    opened, closed = [], []

    def local_host():
        made = Host('local', 'local', FakeEngine().client(), lost=lambda: 'the link broke')
        made._closers.append(lambda: closed.append(made))
        opened.append(made)
        return made
    monkeypatch.setattr(hosts, '_local_host', local_host)
    ctx = Context(config.from_mapping({'jobs': {'A': {'factory': 'a:A'}}}, path=tmp_path / 'pipeline.toml',
                                      environ={}))
    for _ in range(3):  # three jobs' status
        with backend_on(ctx.config, 'local', ctx.host('local')) as backend:
            assert backend.place is opened[0]
    assert len(opened) == 1 and closed == []
    with pytest.raises(RemoteError, match='the SSH connection to local was lost: the link broke'):
        with backend_on(ctx.config, 'local', ctx.host('local')):
            raise OSError('broken pipe')
    assert opened[0].gone and ctx.host('local') is opened[1] and closed == [opened[0]]  # the next step: a new one
    ctx.close_hosts()
    assert closed == opened
