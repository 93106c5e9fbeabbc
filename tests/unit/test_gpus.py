"""GPUs handed out on a host, over the fake engine: what nvidia-smi says (the parser of real output), who holds
which GPU (device requests as Docker's NVIDIA driver reads them), the choice, the queue and its words, the
host's lock (a real flock here), the check before any step, and ``doit gpus``. This machine has no GPU: the local
host's GPU path runs with an nvidia-smi stand-in on the PATH (the same command and parser as for a real one).
"""
import contextlib
import io
import os
import subprocess
import sys
import threading

import pytest

from conftest import REPO
from fakes.engine import FakeEngine
from fakes.runs import IMAGE, make_spec
from tg_pipeline.config.schema import RunSettings
from tg_pipeline.config.values import parse_gpus
from tg_pipeline.console import Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.hosts import gpus as host_gpus
from tg_pipeline.hosts.gpus import GPU, Holder, device_ids, held, parse_inventory
from tg_pipeline.hosts.host import Host
from tg_pipeline.runs import allocation
from tg_pipeline.runs.allocation import choose, request_problem
from tg_pipeline.runs.hosted import HostBackend

REAL = ('0, GPU-5e3a0b7c-1d2e-4f50-8a9b-0c1d2e3f4a5b, NVIDIA A100-SXM4-80GB, 81920 MiB, 12 MiB\n'
        '1, GPU-6f4b1c8d-2e3f-4a61-9b0c-1d2e3f4a5b6c, NVIDIA A100-SXM4-80GB, 81920 MiB, 40213 MiB\n')
UUID1 = 'GPU-6f4b1c8d-2e3f-4a61-9b0c-1d2e3f4a5b6c'
FOUR = [GPU(str(i), f'GPU-{i}', 'Tesla T4', 15360.0, 0.0) for i in range(4)]


def standin_smi(folder, count=4) -> str:
    """A folder holding an executable ``nvidia-smi`` that lists ``count`` GPUs as the real one does."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = '\\n'.join(f'{i}, GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd, Tesla T4, 15360 MiB, {i} MiB'
                       for i in range(count))
    script = folder / 'nvidia-smi'
    script.write_text(f'#!/bin/sh\nprintf "{lines}\\n"\n')
    script.chmod(0o755)
    return str(folder)


@pytest.fixture
def engine():
    engine = FakeEngine()
    engine.program(IMAGE, run_until_stopped=True)
    return engine


@pytest.fixture
def local_gpus(tmp_path, monkeypatch):
    """This machine with 4 stand-in GPUs (nvidia-smi on the PATH), and a GPU lock of the test's own."""
    monkeypatch.setenv('PATH', standin_smi(tmp_path / 'bin') + os.pathsep + os.environ['PATH'])
    monkeypatch.setattr(host_gpus, 'LOCK', str(tmp_path / 'gpus.lock'))
    return tmp_path


def host_of(engine) -> Host:
    return Host('local', 'local', engine.client())


# --- what nvidia-smi says, and who holds what ----------------------------------------------------------------
def test_the_inventory_is_read_as_nvidia_smi_prints_it():
    gpus = parse_inventory(REAL + '2, GPU-x, Tesla T4, [N/A], [N/A]\nNVIDIA-SMI has failed\n')
    assert [(g.index, g.name, g.total_mib, g.used_mib) for g in gpus] == [
        ('0', 'NVIDIA A100-SXM4-80GB', 81920.0, 12.0), ('1', 'NVIDIA A100-SXM4-80GB', 81920.0, 40213.0),
        ('2', 'Tesla T4', None, None)]
    assert parse_inventory('0, GPU-a, Tesla T4, 15360, 3\n')[0].total_mib == 15360.0  # nounits


@pytest.mark.parametrize('request_, held_ids', [
    ({'Count': 2, 'Capabilities': [['gpu']]}, ('0', '1')),  # docker run --gpus 2: devices 0 and 1
    ({'Count': -1, 'Capabilities': [['gpu']]}, ('0', '1', '2', '3')),  # --gpus all
    ({'DeviceIDs': ['3', 'GPU-1'], 'Capabilities': [['gpu']]}, ('3', '1')),  # by index or UUID
    ({'DeviceIDs': ['7'], 'Capabilities': [['gpu']]}, ('7',)),  # an id this host does not list stays as given
    ({'Driver': 'nvidia', 'Count': 1}, ('0',)),
    ({'Count': 1, 'Capabilities': [['tpu']]}, ()),  # no GPU asked for
])
def test_a_device_request_holds_what_dockers_nvidia_driver_gives(request_, held_ids):
    assert device_ids(request_, FOUR) == held_ids


def test_holders_are_every_running_container_whoever_started_it(engine):
    from docker.types import DeviceRequest
    client = engine.client()
    image = engine.image(IMAGE).id
    def start(name, labels=None, **host):
        made = client.api.create_container(image, name=name, labels=labels or {},
                                           host_config=client.api.create_host_config(**host))
        client.api.start(made['Id'])
        return made['Id']
    start('someone', device_requests=[DeviceRequest(device_ids=['3'], capabilities=[['gpu']])])
    start('ours', {'tg_pipeline.run_id': 'r1', 'tg_pipeline.job': 'Train', 'tg_pipeline.project': 'p',
                   'tg_pipeline.owner': 'bob', 'tg_pipeline.gpu_ids': '0,1', 'tg_pipeline.variant': '2'})
    start('ours-no-gpu', {'tg_pipeline.run_id': 'r2'})
    start('runtime', runtime='nvidia')  # no NVIDIA_VISIBLE_DEVICES of its own: nothing held
    stopped = start('gone', device_requests=[DeviceRequest(count=-1, capabilities=[['gpu']])])
    client.api.stop(stopped)
    found = host_gpus.holders(client, FOUR)
    assert sorted((h.name, h.ids) for h in found) == [('ours', ('0', '1')), ('someone', ('3',))]
    inspected = {c.path.split('/')[2] for c in engine.find('GET', '/containers/*/json')}
    assert len(inspected) == 2  # someone's and runtime's: ours are known by their label
    who = {h.name: h.who() for h in found}
    assert who['ours'] == 'run r1 (job Train, variant 2) of project p of bob'
    assert who['someone'].startswith('container someone (') and who['someone'].endswith('not run by tg_pipeline')


# --- the choice, and what the host cannot give ------------------------------------------------------------------
def holder(name, *ids, run_id=''):
    return Holder(ids, name, 'img', {'run_id': run_id, 'job': 'J', 'project': 'p', 'owner': 'o'} if run_id else {})


def test_a_count_takes_free_gpus_and_waits_when_too_few_are_free():
    by_gpu = held([holder('a', '0', '2')])
    assert choose(parse_gpus('2'), FOUR, by_gpu) == ('1', '3')
    assert choose(parse_gpus('3'), FOUR, by_gpu) is None
    assert choose(parse_gpus('3'), FOUR, by_gpu, share=True) == ('1', '3', '0')  # the least held first
    assert choose(parse_gpus('1,3'), FOUR, by_gpu) == ('1', '3')
    assert choose(parse_gpus('0,1'), FOUR, by_gpu) is None  # ids wait for those very GPUs
    assert choose(parse_gpus('device=GPU-3'), FOUR, {}) == ('3',)
    assert choose(parse_gpus('all'), FOUR, by_gpu) is None and choose(parse_gpus('all'), FOUR, {}) == tuple('0123')


def test_what_the_host_cannot_give_is_said_with_its_gpus():
    assert request_problem('2', FOUR, 'gpu@box:22', 'Train') is None
    too_many = request_problem('9', FOUR, 'gpu@box:22', 'Train')
    assert too_many.message == 'job Train asks for 9 GPUs (gpus = "9"), and gpu@box:22 has 4: 0, 1, 2, 3 (Tesla T4)'
    assert too_many.hint == 'ask for 4 at most (gpus=4), or for some by id: gpus=0'
    unknown = request_problem('0,5', FOUR, 'gpu@box:22', 'Train')
    assert unknown.message.startswith('job Train asks for GPU 5 (gpus = "0,5"), which gpu@box:22 does not have')
    assert 'has none' in request_problem('1', [], 'this machine', 'Train').message
    assert request_problem('0', [], 'this machine', 'Train') is None


def test_who_holds_the_gpus_is_said_in_one_line():
    text = allocation.holders_text(FOUR, held([holder('c1', '0', '1', run_id='r7'), holder('x', '3')]))
    assert text == ('1 of its 4 GPUs are free (2); GPU 0,1: run r7 (job J) of project p of o; GPU 3: container x '
                    '(img), not run by tg_pipeline')


# --- handed out on a host: the lock, the queue, the run's container ------------------------------------------------
def gpu_spec(engine, gpus='2', **settings):
    return make_spec(engine, run=RunSettings(gpus=gpus, **settings))


def test_each_run_gets_gpus_no_other_running_container_holds(engine, local_gpus):
    backend = HostBackend(host_of(engine), console=Console(quiet=True))
    first = backend.start(backend.prepare(gpu_spec(engine)))
    second = backend.start(backend.prepare(gpu_spec(engine)))
    requests = [engine.containers[h.ref].host_config['DeviceRequests'] for h in (first, second)]
    assert [r[0]['DeviceIDs'] for r in requests] == [['0', '1'], ['2', '3']]
    assert [r[0]['Count'] for r in requests] == [0, 0]  # device ids, never a count (which means 0..N-1)
    assert (first.label('gpu_ids'), second.label('gpu_ids')) == ('0,1', '2,3')
    backend.stop(first)  # its GPUs are free again
    third = backend.start(backend.prepare(gpu_spec(engine, gpus='1')))
    assert third.label('gpu_ids') == '0'


def test_a_run_that_may_not_wait_names_who_holds_the_gpus(engine, local_gpus):
    backend = HostBackend(host_of(engine), console=Console(quiet=True))
    backend.start(backend.prepare(gpu_spec(engine, gpus='3')))
    with pytest.raises(PipelineError) as refused:
        backend.prepare(gpu_spec(engine, gpus='2', gpu_wait=False))
    assert refused.value.message.startswith('job Greeter asks for gpus = "2" on this machine, and 1 of its 4 GPUs '
                                            'are free (3); GPU 0,1,2: run ')
    assert 'gpu_share=1' in refused.value.hint
    shared = backend.start(backend.prepare(gpu_spec(engine, gpus='2', gpu_share=True)))
    assert shared.label('gpu_ids') == '3,0'


def test_a_queued_run_says_what_it_waits_for_and_starts_when_the_gpus_are_free(engine, local_gpus, monkeypatch):
    monkeypatch.setattr(allocation, 'RETRY_S', 0.01)
    out = io.StringIO()
    backend = HostBackend(host_of(engine), console=Console(out=out))
    holding = backend.start(backend.prepare(gpu_spec(engine, gpus='4')))
    sleeps, real_sleep = [], allocation.time.sleep

    def sleep(seconds):  # the queue's wait: meanwhile, the holder ends (other waits, e.g. subprocess's, as they are)
        if seconds != allocation.RETRY_S:
            return real_sleep(seconds)
        sleeps.append(seconds)
        backend.stop(holding)
    monkeypatch.setattr(allocation.time, 'sleep', sleep)
    queued = backend.start(backend.prepare(gpu_spec(engine, gpus='2')))
    assert queued.label('gpu_ids') == '0,1' and len(sleeps) == 1
    assert out.getvalue().startswith(f'Waiting for GPUs: job Greeter asks for gpus = "2" on this machine, and 0 of '
                                     f'its 4 GPUs are free; GPU 0,1,2,3: run {holding.run_id} (job Greeter) of '
                                     f'project proj-a of alice (looking again every 0.01 s; Ctrl-C stops waiting)')


def test_a_host_without_nvidia_smi_leaves_gpus_to_its_engine(engine, monkeypatch):
    monkeypatch.setattr(host_gpus, 'run', lambda host, command: _no_smi())
    backend = HostBackend(host_of(engine), console=Console(quiet=True))
    handle = backend.start(backend.prepare(gpu_spec(engine, gpus='2')))
    assert engine.containers[handle.ref].host_config['DeviceRequests'][0]['Count'] == 2  # as given, as before


def _no_smi():
    from tg_pipeline.hosts.shell import Output
    return Output(127, '', 'sh: 1: nvidia-smi: not found\n')


def test_the_gpu_lock_is_one_at_a_time_and_goes_with_a_holder_that_dies(tmp_path, monkeypatch):
    """The lock as every user of a box takes it (flock on a folder, through sh): a second taker waits, and says
    so; a holder killed with -9 lets go at once."""
    lock = str(tmp_path / 'gpus.lock')
    holder_code = (f'import sys; sys.path.insert(0, {str(REPO)!r}); from tg_pipeline.hosts.gpus import gpu_lock; '
                   f'from tg_pipeline.hosts.host import Host; import time\n'
                   f'with gpu_lock(Host("local", "local", None), path={lock!r}):\n'
                   f'    print("holding", flush=True); time.sleep(600)')
    holding = subprocess.Popen([sys.executable, '-c', holder_code], stdout=subprocess.PIPE, text=True)
    try:
        assert holding.stdout.readline().strip() == 'holding'
        waited = threading.Event()
        got = threading.Event()

        def take():
            with host_gpus.gpu_lock(Host('local', 'local', None), Console(quiet=True), path=lock):
                got.set()
        monkeypatch.setattr(host_gpus.Held, 'wait_line', _noting(host_gpus.Held.wait_line, waited))
        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        assert waited.wait(60) and not got.is_set()  # it waits for the holder
        holding.kill()
        taker.join(60)
        assert got.is_set()
    finally:
        holding.kill()
        holding.wait()


def _noting(wait_line, waited):
    def wrapped(self, patience, waiting):
        return wait_line(self, 0.05, lambda: (waited.set(), waiting()))
    return wrapped


# --- doit gpus, and the check before any step --------------------------------------------------------------------
@contextlib.contextmanager
def _opened(engine):
    yield host_of(engine)


def show(engine, monkeypatch, **variables):
    from tg_pipeline.hosts import host as hosts_host
    from tg_pipeline.workflow.context import Context
    from tg_pipeline.workflow.gpus import show_gpus
    from tg_pipeline import config
    from pathlib import Path
    monkeypatch.setattr(hosts_host, 'open_host', lambda config, where: _opened(engine))
    out = io.StringIO()
    settings = config.from_mapping({'jobs': {}}, path=Path('/x/pipeline.toml'))
    ctx = Context(settings, variables, console=Console(out=out))
    show_gpus(ctx)
    return out.getvalue()


def test_doit_gpus_shows_each_gpu_its_memory_and_who_holds_it(engine, local_gpus, monkeypatch):
    backend = HostBackend(host_of(engine), console=Console(quiet=True))
    backend.start(backend.prepare(gpu_spec(engine, gpus='2')))
    lines = show(engine, monkeypatch, where='local').splitlines()
    assert lines[0] == '# this machine: 4 GPU(s), 2 free'
    assert lines[1].split() == ['GPU', 'NAME', 'MEMORY', 'HELD', 'BY']
    assert lines[2].startswith('0    Tesla T4  0 / 15360 MiB  run ') and lines[2].endswith(
        '(job Greeter) of project proj-a of alice')
    assert lines[5] == '3    Tesla T4  3 / 15360 MiB  free'


def test_doit_gpus_without_nvidia_smi_says_so_in_one_line(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(host_gpus, 'run', lambda host, command: _no_smi())
    assert show(engine, monkeypatch, where='local') == 'this machine: no NVIDIA GPU (nvidia-smi is not installed ' \
                                                       'there)\n'


def test_more_gpus_than_the_host_has_stop_before_any_step(local_gpus, tmp_path):
    from tg_pipeline import config
    from tg_pipeline.workflow.gpus import check_early
    settings = config.from_mapping({'jobs': {'Train': {'factory': 'jobs.t:T', 'gpus': 5},
                                             'Cpu': {'factory': 'jobs.t:T'}}}, path=tmp_path / 'pipeline.toml')
    check_early(settings, ['Cpu'], ['run_local'])  # no GPU asked for: nothing to look at
    check_early(settings, ['Train'], ['build_image'])  # no run here
    with pytest.raises(PipelineError) as refused:
        check_early(settings, ['Train', 'Cpu'], ['run_local'])
    assert refused.value.message == 'job Train asks for 5 GPUs (gpus = "5"), and this machine has 4: 0, 1, 2, 3 ' \
                                    '(Tesla T4)'
