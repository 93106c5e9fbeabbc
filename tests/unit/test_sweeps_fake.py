"""Sweeps on one host over the fake engine: each variant its own container (its index as the slot the entry point
picks it by), at most max_concurrent at once, collected into RUN_ID/variant_N*, the table of results; how many at
once by default; ``max_concurrent`` one setting for every host; yes/no settings as 1/0 on the command line."""
import io
import json
import pickle

import pytest

from fakes.engine import FakeEngine
from fakes.runs import IMAGE, make_spec
from tg_pipeline import config
from tg_pipeline.config.schema import RunSettings
from tg_pipeline.console import Console
from tg_pipeline.errors import JobFailed
from tg_pipeline.hosts.host import Host
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.hosted import HostBackend
from tg_pipeline.runs.sweep import Found, concurrency, state_text
from tg_pipeline.runtime import protocol

LABELS = ('lr=0.1', 'lr=0.01', 'lr=0.001')


def sweep_spec(engine, **settings):
    return make_spec(engine, variants=LABELS, sweep=True, run=RunSettings(**settings))


def run_sweep(engine, tmp_path, **settings):
    out = io.StringIO()
    backend = HostBackend(Host('local', 'local', engine.client()), console=Console(out=out))
    paths = RunPaths(tmp_path / 'local')
    try:
        result = lifecycle.run(backend, sweep_spec(engine, **settings), paths, console=Console(out=out, err=out))
    except JobFailed as e:
        result = e
    return result, out.getvalue(), paths


def test_each_variant_runs_in_its_own_container_and_the_results_come_back_by_variant(tmp_path):
    engine = FakeEngine()
    engine.program(IMAGE, stdout=b'training\n', files={protocol.RESULT_FILE: pickle.dumps(0.9)})
    result, out, paths = run_sweep(engine, tmp_path, max_concurrent=2)
    made = [c for c in engine.removed if 'tg_pipeline.variant' in c.labels]
    assert sorted(c.name.rsplit('-', 1)[1] for c in made) == ['v0', 'v1', 'v2']
    for container in made:
        index = container.labels['tg_pipeline.variant']
        assert f'{protocol.ENV_SLOT}={index}' in container.body['Env']  # the entry point picks its variant by it
        assert json.loads(container.labels['tg_pipeline.variants']) == list(LABELS)
        assert container.labels['tg_pipeline.run_id'] == result.run_id
    assert [(v['variant'], v['label'], v['state'], v['exit_code']) for v in result.variants] == [
        (0, 'lr=0.1', 'complete', 0), (1, 'lr=0.01', 'complete', 0), (2, 'lr=0.001', 'complete', 0)]
    assert result.value == {'lr=0.1': 0.9, 'lr=0.01': 0.9, 'lr=0.001': 0.9}
    assert f'Started sweep run {result.run_id} (local): 3 variants, each in its own container, at most 2 at a ' \
           f'time' in out
    assert '[variant 1] training\n' in out
    assert engine.containers == {}  # the marker and every variant's container are gone
    for index in range(3):
        assert (paths.run_dir(result.run_id) / f'variant_{index}' / protocol.RESULT_FILE).exists()
        assert paths.run_dir(result.run_id).joinpath(f'variant_{index}.out').read_bytes() == b'training\n'
    assert not paths.out(result.run_id).exists()  # no sweep-wide log: each variant has its own
    shown = io.StringIO()
    lifecycle.report(result, Console(out=shown))
    assert shown.getvalue().splitlines()[1] == '  variant 0 (lr=0.1): complete, exit 0, result 0.9'
    assert shown.getvalue().startswith(f'Sweep run {result.run_id}: results by variant')


def test_a_failed_variant_is_named_and_the_others_still_run(tmp_path):
    engine = FakeEngine()
    engine.program(IMAGE, exit_code=1, stderr=b'boom\n')
    failed, out, paths = run_sweep(engine, tmp_path)
    assert isinstance(failed, JobFailed)
    assert failed.message.startswith('3 variant(s) of job Greeter failed in sweep run ')
    record = paths.read_record(failed.result.run_id)
    assert [v['state'] for v in record['variants']] == ['failed'] * 3
    assert 'doit status job=Greeter where=local run_id=' in failed.hint


@pytest.mark.parametrize('settings, info, gpus, expected', [
    ({}, {}, False, 6),  # no limits: all at once
    ({'max_concurrent': 2}, {}, True, 2),
    ({'cpu': 2.0}, {'NCPU': 8}, False, 4),
    ({'cpu': 1.0, 'memory_gb': 4.0}, {'NCPU': 8, 'MemTotal': 12 * 1024 ** 3}, False, 3),
    ({'cpu': 16.0}, {'NCPU': 8}, False, 1),
    ({'cpu': 1.0}, {'NCPU': 8}, True, 6),  # a GPU job: as many as the free GPUs allow (each waits for its own)
])
def test_how_many_variants_run_at_once(settings, info, gpus, expected):
    spec = make_spec(FakeEngine(), image='', variants=tuple(f'v={i}' for i in range(6)), sweep=True,
                     run=RunSettings(**settings))
    assert concurrency(spec, info, gpus) == expected


def test_a_sweeps_state_counts_its_variants():
    found = Found({'Id': 'm'}, {0: {'State': 'running'}, 1: {'State': 'exited', 'Status': 'Exited (0) 2 s ago'},
                                2: {'State': 'exited', 'Status': 'Exited (1) 1 s ago'}})
    assert state_text(5, found, {4}) == ('5 variants: 1 running, 1 queued, 1 collected, 1 exited 0, 1 exited 1', True)
    assert state_text(3, Found(None, found.variants), set()) == ('3 variants: 1 running, 1 exited 0, 1 exited 1', True)
    assert state_text(2, Found(None, {0: found.variants[1]}), set()) == ('2 variants: 1 exited 0, 1 not started',
                                                                         False)


def test_max_concurrent_is_one_setting_for_every_host(tmp_path):
    (tmp_path / 'pipeline.toml').write_text('[swarm]\nmax_concurrent = 3\n[jobs.A]\nfactory = "jobs.a:A"\n'
                                            '[jobs.B]\nfactory = "jobs.a:A"\nmax_concurrent = 1\n')
    settings = config.load(tmp_path / 'pipeline.toml')
    assert (settings.run.max_concurrent, settings.job('A').run.max_concurrent, settings.job('B').run.max_concurrent) \
        == (3, 3, 1)
    assert settings.origins['run.max_concurrent'].endswith('pipeline.toml:2')  # where it was given
    given = config.load(tmp_path / 'pipeline.toml', overrides={'max_concurrent': '4', 'fail_fast': '1',
                                                                'gpu_wait': '0', 'gpu_share': 'yes'})
    run = given.job('A').run
    assert (run.max_concurrent, run.fail_fast, run.gpu_wait, run.gpu_share) == (4, True, False, True)
