"""Swarm runs over the fake engine (``runs/swarm.py`` through ``runs.lifecycle``): one replicated-job service
made from the registry reference with the digest, labelled with the run's identity; each variant's log and
run folder collected from the service log, where the entry point sends the folder as marker lines."""
import io
import json
import pickle
import tarfile
import types

import pytest

from fakes.engine import FakeEngine
from fakes.runs import IMAGE, TRACE, make_spec
from fakes.state import Program
from tg_pipeline.config.schema import RunSettings, SwarmSettings
from tg_pipeline.console import Console
from tg_pipeline.errors import JobFailed
from tg_pipeline.hosts.host import Host
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.lifecycle import Scope
from tg_pipeline.runs.swarm import SwarmBackend
from tg_pipeline.errors import SwarmError
from tg_pipeline.runtime import protocol

REFERENCE = 'localhost:5000/tgtest-greeter@sha256:' + 'ab' * 32
VARIANTS = ('lr=0.1', 'lr=1')


def task(index: int, lines: bytes, files: dict, exit_code: int = 0) -> Program:
    """A task as the entry point runs it: its output, then its run folder as marker lines (short ones, so
    that each folder travels in several parts)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        for name, data in files.items():
            info = tarfile.TarInfo('./' + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    markers = protocol.marker_lines(index, protocol.SEND_BACK_FILE, buffer.getvalue(), size=120)
    assert len(markers) > 1
    return Program(stdout=lines + '\n'.join(markers).encode() + b'\n', exit_code=exit_code)


def outcome(value) -> dict:
    return {'result.pkl': pickle.dumps(value), 'exit.json': json.dumps({'exit_code': 0, 'reason': 'ok'}).encode()}


@pytest.fixture
def engine():
    engine = FakeEngine()
    engine.program(IMAGE)  # the image as built here: the spec names its id
    engine.swarm(nodes=2)
    return engine


@pytest.fixture
def backend(engine):
    return SwarmBackend(Host('swarm', 'swarm local', engine.client()))


def swarm_spec(engine, **changes):
    return make_spec(engine, reference=REFERENCE, variants=VARIANTS, **changes)


def test_each_variant_comes_back_from_the_marker_lines(engine, backend, tmp_path):
    engine.program_tasks(REFERENCE, [task(0, b'training lr=0.1\n', outcome(0.9)),
                                     task(1, b'training lr=1\nepoch 2\n', outcome(0.5))])
    paths = RunPaths(tmp_path / 'swarm')
    spec = swarm_spec(engine)
    result = lifecycle.run(backend, spec, paths, console=Console(quiet=True))
    assert result.ok and result.value == {'lr=0.1': 0.9, 'lr=1': 0.5}
    run_dir = paths.run_dir(result.run_id)
    assert (run_dir / 'variant_1.out').read_text() == 'training lr=1\nepoch 2\n'  # no marker line left
    assert (run_dir / 'variant_0' / 'exit.json').exists()
    record = paths.read_record(result.run_id)
    assert [(v['label'], v['state'], v['exit_code'], v['ok']) for v in record['variants']] == [
        ('lr=0.1', 'complete', 0, True), ('lr=1', 'complete', 0, True)]
    assert engine.services == {} and len(engine.removed_services) == 1


def test_the_service_is_made_from_the_reference_with_the_digest_and_labelled(engine, backend, tmp_path):
    engine.program_tasks(REFERENCE, [task(0, b'', outcome(1))])
    spec = swarm_spec(engine, project='proj-a', owner='alice', run=RunSettings(env=('TOKEN',)))
    handle = lifecycle.run(backend, spec, RunPaths(tmp_path), detach=True, console=Console(quiet=True),
                           environ={'TOKEN': 'a b'})
    body = engine.last('POST', '/services/create').body
    container = body['TaskTemplate']['ContainerSpec']
    assert container['Image'] == REFERENCE and container['Init'] is True
    assert body['Mode'] == {'ReplicatedJob': {'MaxConcurrent': 2, 'TotalCompletions': 2}}
    assert body['TaskTemplate']['RestartPolicy']['Condition'] == 'none'
    labels = body['Labels']
    assert {k: labels[f'tg_pipeline.{k}'] for k in ('project', 'owner', 'image', 'run_id', 'job', 'variants')} == {
        'project': 'proj-a', 'owner': 'alice', 'image': spec.image_id, 'run_id': handle.run_id, 'job': 'Greeter',
        'variants': json.dumps(list(VARIANTS))}
    assert container['Labels'] == labels and body['Name'] == handle.name and handle.name.endswith(handle.run_id)
    assert {'TOKEN=a b', 'TG_PIPELINE_SEND_BACK=1', 'TG_PIPELINE_SLOT={{.Task.Slot}}',
            f'TG_PIPELINE_RUN_ID={handle.run_id}'} <= set(container['Env'])


def test_a_failed_variant_raises_with_its_own_traceback(engine, backend, tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr('tg_pipeline.runs.swarm.time', types.SimpleNamespace(
        time=lambda: clock[0], sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds)))
    failed = {'traceback.txt': TRACE.encode(), 'exit.json': b'{"exit_code": 1, "reason": "exception"}'}
    engine.program_tasks(REFERENCE, [task(0, b'fine\n', outcome(0.9)),
                                     task(1, b'diverged\n', failed, exit_code=1)])
    paths = RunPaths(tmp_path / 'swarm')
    with pytest.raises(JobFailed) as info:
        lifecycle.run(backend, swarm_spec(engine), paths, console=Console(quiet=True))
    run_id = info.value.result.run_id
    assert info.value.message.startswith(f'1 variant(s) of job Greeter failed in swarm run {run_id} (swarm local): '
                                         'variant 1 (lr=1): failed exit 1\n')
    assert info.value.exit_code == 1 and info.value.remote_traceback == TRACE
    assert info.value.result.variants[0]['value'] == 0.9
    rows = lifecycle.status(backend, Scope('Greeter', 'proj-a'), paths, console=Console(out=io.StringIO()))
    assert rows[0]['state'] == 'collected, 1/2 variants succeeded'


def test_status_and_result_see_the_projects_own_swarm_runs(engine, backend, tmp_path):
    engine.program_tasks(REFERENCE, [task(0, b'', outcome('a')), task(1, b'', outcome('b'))])
    paths = RunPaths(tmp_path / 'swarm')
    mine = lifecycle.run(backend, swarm_spec(engine), paths, detach=True, console=Console(quiet=True)).run_id
    theirs = lifecycle.run(backend, swarm_spec(engine, project='proj-b', owner='bob'), paths, detach=True,
                           console=Console(quiet=True)).run_id
    rows = lifecycle.status(backend, Scope('Greeter', 'proj-a'), paths, console=Console(out=io.StringIO()))
    assert [(r['run_id'], r['state']) for r in rows] == [(mine, '2 complete')]
    result = lifecycle.result(backend, Scope('Greeter', 'proj-a'), paths)
    assert result.run_id == mine and result.value == {'lr=0.1': 'a', 'lr=1': 'b'}
    assert [s.labels['tg_pipeline.run_id'] for s in engine.services.values()] == [theirs]


def test_an_engine_that_is_no_swarm_manager_is_told_at_once(tmp_path):
    engine = FakeEngine()
    engine.program(IMAGE)
    backend = SwarmBackend(Host('swarm', 'swarm local', engine.client()))
    with pytest.raises(SwarmError, match='the Docker engine of swarm local is not a swarm manager'):
        lifecycle.run(backend, swarm_spec(engine), RunPaths(tmp_path), console=Console(quiet=True))
    assert engine.find('POST', '/services/create') == []


def test_reservations_no_node_can_hold_are_told_at_once(engine, tmp_path):
    backend = SwarmBackend(Host('swarm', 'swarm local', engine.client()),
                           SwarmSettings(cpu_reservation=4, memory_reservation_gb=1))
    with pytest.raises(SwarmError) as info:
        lifecycle.run(backend, swarm_spec(engine), RunPaths(tmp_path), console=Console(quiet=True))
    assert 'no ready node of the swarm has that much (2 ready, the largest has 2 CPU and 24.0 GB)' in \
        info.value.message
    assert engine.services == {}


def test_tasks_queued_behind_their_own_siblings_are_not_stuck():
    """A task waiting for the GPU (or reservation) a sibling of the same run holds gets it when that one ends;
    only when no task of the run holds a node does an unschedulable one count as stuck."""
    from tg_pipeline.runs.swarm import unschedulable

    def state(name, err=''):
        return {'Status': {'State': name, 'Err': err}}
    waiting = state('pending', 'no suitable node (insufficient resources on 2 nodes)')
    assert unschedulable([state('running'), waiting]) is None
    assert unschedulable([state('starting'), waiting, waiting]) is None
    assert unschedulable([state('complete'), waiting]) is waiting
    assert unschedulable([waiting]) is waiting
    assert unschedulable([state('pending'), state('complete')]) is None  # pending, not refused: being placed


def test_a_remote_manager_needs_the_remote_host(tmp_path):
    """manager = "remote" without a [remote] host names the setting, instead of using this machine's swarm."""
    from tg_pipeline import config
    from tg_pipeline.errors import ConfigError
    from tg_pipeline.hosts.host import open_host
    (tmp_path / 'pipeline.toml').write_text('[package]\nname = "p"\nversion = "0.0.0"\n\n[swarm]\n'
                                            'manager = "remote"\n')
    settings = config.load(tmp_path / 'pipeline.toml', environ={})
    with pytest.raises(ConfigError) as info:
        with open_host(settings, 'swarm'):
            pass
    assert info.value.key == 'swarm.manager'
    assert 'set host in [remote] to the head node' in info.value.hint


def test_another_projects_swarm_run_is_not_stopped(engine, backend, tmp_path):
    """Stopping a swarm run removes its service and its log: another project's run is left to its owner."""
    engine.program_tasks(REFERENCE, [task(0, b'', outcome('a')), task(1, b'', outcome('b'))])
    paths = RunPaths(tmp_path / 'swarm')
    theirs = lifecycle.run(backend, swarm_spec(engine, project='proj-b', owner='bob'), paths, detach=True,
                           console=Console(quiet=True)).run_id
    for running in next(iter(engine.services.values())).tasks:
        running['Status']['State'] = 'running'
    from tg_pipeline.errors import PipelineError
    with pytest.raises(PipelineError) as info:
        lifecycle.stop(backend, Scope('Greeter', 'proj-a'), paths, theirs, console=Console(out=io.StringIO()))
    assert f'swarm run {theirs} belongs to project proj-b of bob' in info.value.message
    assert [s.labels['tg_pipeline.run_id'] for s in engine.services.values()] == [theirs]
