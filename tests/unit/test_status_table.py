"""``doit status`` as people read it (``runs.lifecycle.status`` over the fake engine): a table with headers, and
each run's DURATION: since its start while it runs, from start to end once it ended (on the host, and after
it was collected here), by the host's clock; a swarm run from its first task to its last."""
import datetime
import io
import json

import pytest

from fakes.engine import FakeEngine
from fakes.runs import IMAGE, local_backend, make_spec
from fakes.state import rfc3339
from .test_swarm_fake import outcome, task
from tg_pipeline.hosts.host import Host
from tg_pipeline.console import Console
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.lifecycle import run_container
from tg_pipeline.runs.lifecycle import Scope
from tg_pipeline.runs.swarm import SwarmBackend

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.timezone.utc)
SCOPE = Scope('Greeter', 'proj-a')


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def engine(clock):
    return FakeEngine(clock=clock)


def table(backend, paths, **kwargs):
    out = io.StringIO()
    rows = lifecycle.status(backend, SCOPE, paths, console=Console(out=out), **kwargs)
    return rows, out.getvalue().splitlines()


def test_the_table_has_headers_and_an_ended_run_lasts_from_its_start_to_its_end(engine, clock, tmp_path):
    engine.program(IMAGE, stdout=b'hi\n')
    client, paths = engine.client(), RunPaths(tmp_path / 'local')
    run_id = run_container(client, make_spec(engine), detach=True, console=Console(quiet=True)).run_id
    clock.now = T0 + datetime.timedelta(minutes=1, seconds=15)
    engine.finish()
    clock.now = T0 + datetime.timedelta(hours=5)  # the time of the status: no part of an ended run's duration
    backend = local_backend(client)
    rows, lines = table(backend, paths)
    assert lines[1].split() == ['RUN', 'ID', 'STATE', 'STARTED', 'DURATION', 'VERSION', 'OWNER', 'HOST']
    assert [(r['run_id'], r['state'], r['duration']) for r in rows] == [(run_id, 'exited 0', '1 min 15 s')]
    assert lines[2].startswith(f'{run_id}  exited 0  ')
    assert rows[0]['started'] == T0.astimezone().strftime('%Y-%m-%d %H:%M:%S')  # the host's start, local time
    lifecycle.result(backend, SCOPE, paths)  # collected and removed from the engine
    rows, lines = table(backend, paths)
    assert [(r['run_id'], r['state'], r['duration']) for r in rows] == [(run_id, 'collected, exited 0', '1 min 15 s')]
    assert lines[2].startswith(f'{run_id}  collected, exited 0  ')


def test_a_running_run_lasts_since_its_start(engine, tmp_path):
    engine.program(IMAGE, run_until_stopped=True)
    client = engine.client()
    handle = run_container(client, make_spec(engine), detach=True, console=Console(quiet=True))
    started = datetime.datetime.fromisoformat(handle.labels['started'])
    assert started.tzinfo is not None  # the label says its offset: any reader gets the same moment
    later = started + datetime.timedelta(hours=3, minutes=7, seconds=5)
    rows, lines = table(local_backend(client), RunPaths(tmp_path / 'local'), now=later)
    assert [(r['state'], r['duration']) for r in rows] == [('running', '3 h 07 min')]
    assert lines[2].startswith(f'{handle.run_id}  running  ')


def test_a_run_collected_before_the_host_times_were_recorded_uses_its_started_label(engine, tmp_path):
    paths = RunPaths(tmp_path / 'local')
    finished = T0 + datetime.timedelta(days=2, hours=4, minutes=30)
    local_start = (finished - datetime.timedelta(seconds=90)).astimezone().replace(tzinfo=None)  # no offset
    paths.write_record('20260301-080000-000000-abcdef', {
        'run_id': '20260301-080000-000000-abcdef', 'job': 'Greeter', 'exit_code': 0, 'version': '0.0.1',
        'started': local_start.isoformat(timespec='seconds'), 'finished': rfc3339(finished)})
    rows, _ = table(local_backend(engine.client()), paths)
    assert [(r['state'], r['duration']) for r in rows] == [('collected, exited 0', '1 min 30 s')]


def test_a_swarm_run_lasts_from_its_first_task_to_its_last(engine, clock, tmp_path):
    engine.program(IMAGE)
    engine.swarm(nodes=2)
    reference = 'localhost:5000/tgtest-greeter@sha256:' + 'ab' * 32
    engine.program_tasks(reference, [task(0, b'a\n', outcome('a')), task(1, b'b\n', outcome('b'))])
    backend = SwarmBackend(Host('swarm', 'swarm local', engine.client()))
    paths = RunPaths(tmp_path / 'swarm')
    spec = make_spec(engine, reference=reference, variants=('lr=0.1', 'lr=1'))
    run_id = lifecycle.run(backend, spec, paths, detach=True, console=Console(quiet=True)).run_id
    [service] = engine.services.values()
    service.tasks[1]['Status']['Timestamp'] = rfc3339(T0 + datetime.timedelta(minutes=2, seconds=3))
    rows, _ = table(backend, paths)
    assert [(r['run_id'], r['state'], r['duration']) for r in rows] == [(run_id, '2 complete', '2 min 03 s')]
    lifecycle.result(backend, SCOPE, paths)
    rows, lines = table(backend, paths)
    assert [(r['state'], r['duration']) for r in rows] == [('collected, 2/2 variants succeeded', '2 min 03 s')]
    assert lines[2].startswith(f'{run_id}  collected, 2/2 variants succeeded  ')
    record = json.loads(paths.record(run_id).read_text())
    from tg_pipeline.runs.records import parse_time
    assert [parse_time(record[k]) for k in ('started_at', 'finished')] == [T0, T0 + datetime.timedelta(seconds=123)]


@pytest.mark.parametrize('seconds, shown', [(0, '0 s'), (59, '59 s'), (60, '1 min 00 s'), (3599, '59 min 59 s'),
                                            (3600, '1 h 00 min'), (86399, '23 h 59 min'), (90061, '1 d 01 h')])
def test_durations_read_in_the_two_largest_units(seconds, shown):
    from tg_pipeline.console.units import duration
    assert duration(T0, T0 + datetime.timedelta(seconds=seconds)) == shown
    assert duration(None, T0) == duration(T0, None) == '-'
