"""GPUs, data and caches without Docker: the settings (pipeline.toml, command line, Python API), what a container
run and a swarm service ask the engine for (the fake engine keeps each request verbatim), the refusals, the
time-limit record, exec/forward on swarm, and cache cleanup scoped to the project."""
import io
import json
import textwrap
from pathlib import Path

import pytest

from fakes.runs import IMAGE, local_backend, make_spec, run
from tg_pipeline import config
from tg_pipeline.api import Containering, Packaging, SSHDockerConfig, SSHDockerOptions, pipeline_config
from tg_pipeline.config.schema import RunSettings, SwarmSettings
from tg_pipeline.console import Console
from tg_pipeline.errors import ConfigError, JobFailed, PipelineError
from tg_pipeline.hosts.host import Host
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.lifecycle import exec_command, forward
from tg_pipeline.runs.model import RunHandle, RunResult
from tg_pipeline.runs.records import failure, state_of_record
from tg_pipeline.runs.resources import remove_caches
from tg_pipeline.runs.swarm import SwarmBackend
from tg_pipeline.errors import SwarmError
from tg_pipeline.runtime import protocol

PIPELINE = '''\
[run]
gpus = 2
shm_gb = 1
mounts = ["/data/imagenet:/data"]
caches = { pip = "/root/.cache/pip" }
max_runtime_s = 3600

[jobs.Train]
factory = "jobs.train:Train"
gpus = "0,2"
mounts = ["/scratch:/scratch:rw"]
caches = { huggingface = "/root/.cache/huggingface" }

[jobs.Eval]
factory = "jobs.eval:Eval"
'''


def load(tmp_path, text=PIPELINE, **overrides):
    path = tmp_path / 'pipeline.toml'
    path.write_text(textwrap.dedent(text))
    return config.load(path, overrides=overrides, environ={})


# --- settings -----------------------------------------------------------------------------------------
def test_run_settings_reach_every_job_and_a_job_refines_them(tmp_path):
    c = load(tmp_path)
    train, evaluate = c.job('Train'), c.job('Eval')
    assert (evaluate.run.gpus, evaluate.run.shm_gb, evaluate.run.max_runtime_s) == ('2', 1.0, 3600.0)  # gpus = 2: a count
    assert train.run.gpus == '0,2'
    assert train.run.mounts == ('/data/imagenet:/data', '/scratch:/scratch:rw')
    assert dict(train.run.caches) == {'pip': '/root/.cache/pip', 'huggingface': '/root/.cache/huggingface'}
    assert dict(evaluate.run.caches) == {'pip': '/root/.cache/pip'}
    assert c.origins['jobs.Train.gpus'].endswith('pipeline.toml:10')
    assert c.origins['jobs.Eval.gpus'].endswith('pipeline.toml:2')


def test_the_command_line_wins_over_the_file_and_the_job(tmp_path):
    c = load(tmp_path, gpus='all', ipc='host', shm_gb='0', max_runtime_s='5', ports='6006',
             **{'jobs.Eval.mounts': '/a:/b:rw,/c:/d', 'run.caches.pip': '/pip'})
    train, evaluate = c.job('Train'), c.job('Eval')
    assert train.run.gpus == evaluate.run.gpus == 'all'
    assert train.run.ipc == 'host' and train.run.shm_gb == 0 and train.run.max_runtime_s == 5
    # a list given on the command line replaces [run]'s and the job's (issue 22)
    assert evaluate.run.ports == ('6006',) and evaluate.run.mounts == ('/a:/b:rw', '/c:/d')
    assert dict(evaluate.run.caches) == {'pip': '/pip'}
    assert c.origins['jobs.Train.gpus'] == 'command line'


def test_doit_config_shows_the_settings_with_their_origin(tmp_path):
    shown = config.describe(load(tmp_path, max_runtime_s='60'), ['Train'])
    assert 'gpus = "0,2"  # pipeline.toml:10' in shown
    assert 'max_runtime_s = 60.0  # command line' in shown
    assert 'mounts = ["/data/imagenet:/data", "/scratch:/scratch:rw"]' in shown


@pytest.mark.parametrize('setting, words', [
    ({'gpus': 'some'}, "gpus = 'some' is not \"all\", a count"),
    ({'mounts': 'data:/data'}, "'data:/data' is not HOST_PATH:CONTAINER_PATH[:ro|:rw]"),
    ({'mounts': '/a:/b:rx'}, "'/a:/b:rx' is not HOST_PATH:CONTAINER_PATH[:ro|:rw]"),
    ({'mounts': '/a:/tg_pipeline/run'}, 'which the container needs itself'),
    ({'ports': '99999'}, 'ports are 1 to 65535'),
    ({'ipc': 'private'}, 'run.ipc must be "host"'),
    ({'ipc': 'host', 'shm_gb': '1'}, 'shm_gb = 1 has no effect with ipc = "host"'),
    ({'run.caches.pip': 'relative/path'}, 'a cache is NAME = "/absolute/path/in/the/container"'),
])
def test_a_bad_value_is_one_paragraph_naming_it(tmp_path, setting, words):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[jobs.Eval]\nfactory = "jobs.eval:Eval"\n', **setting)
    assert words in caught.value.message and 'command line' in caught.value.message
    assert caught.value.hint


def test_a_bad_value_in_the_file_names_file_and_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[jobs.Eval]\nfactory = "jobs.eval:Eval"\nmounts = ["/data"]\n')
    assert 'pipeline.toml:3' in caught.value.message and 'jobs.Eval.mounts' in caught.value.message


def api_options(tmp_path, **options):
    packaging = Packaging('scaled', '0.1.0', {'job': 1})
    packaging.build_dir = str(tmp_path / 'build')
    return pipeline_config(SSHDockerConfig(packaging, Containering('scaled', '0.1.0'), SSHDockerOptions(**options)),
                           [tmp_path])


def test_the_python_api_has_the_same_settings(tmp_path):
    job = api_options(tmp_path, cpu_limit=2, memory_limit_in_gygabytes=4, gpus=1, shm_gb=2, ipc=None,
                      mounts=['/data:/data'], caches={'hf': '/root/.cache/huggingface'}, max_runtime_s=30).job('scaled')
    assert (job.run.cpu, job.run.memory_gb, job.run.gpus, job.run.shm_gb, job.run.ipc) == (2.0, 4.0, '1', 2.0, '')
    assert job.run.mounts == ('/data:/data',) and dict(job.run.caches) == {'hf': '/root/.cache/huggingface'}
    assert job.run.max_runtime_s == 30
    with pytest.raises(ConfigError) as caught:
        api_options(tmp_path, gpus='two')
    assert caught.value.file == 'Python API'


# --- container runs ---------------------------------------------------------------------------------------
def resources(env=(), **values) -> dict:
    """A RunSpec's run settings (caches as (name, path) pairs) and env file values (``env``)."""
    if 'caches' in values:
        values['caches'] = dict(values['caches'])
    return {'run': RunSettings(**values), 'env_file_values': env}


def created(engine) -> dict:
    return engine.last('POST', '/containers/create').body


def test_a_container_run_asks_the_engine_for_all_of_it(engine, client, tmp_path):
    engine.program(IMAGE, stdout=b'ok\n')
    data = tmp_path / 'imagenet'
    data.mkdir()
    spec = make_spec(engine, **resources(
        gpus='all', shm_gb=0.5, mounts=(f'{data}:/data', f'{tmp_path}:/out:rw'), caches=(('pip', '/root/.cache/pip'),),
        ports=('6006', '16007:6007', '0.0.0.0:8888:8080'), max_runtime_s=90, env=(('FROM_FILE', 'x'),)))
    result, _, _ = run(client, spec)
    assert result.ok
    body = created(engine)
    host = body['HostConfig']
    assert host['DeviceRequests'] == [{'Driver': '', 'Count': -1, 'DeviceIDs': [], 'Capabilities': [['gpu']],
                                       'Options': {}}]
    assert host['ShmSize'] == 512 * 1024 ** 2 and 'IpcMode' not in host
    volume = 'proj-a-cache-pip'
    assert [(m['Type'], m['Source'], m['Target'], m['ReadOnly']) for m in host['Mounts']] == [
        ('bind', str(data), '/data', True), ('bind', str(tmp_path), '/out', False),
        ('volume', volume, '/root/.cache/pip', False)]
    assert host['PortBindings'] == {'6006/tcp': [{'HostIp': '127.0.0.1', 'HostPort': '6006'}],
                                    '6007/tcp': [{'HostIp': '127.0.0.1', 'HostPort': '16007'}],
                                    '8080/tcp': [{'HostIp': '0.0.0.0', 'HostPort': '8888'}]}
    assert set(body['ExposedPorts']) == {'6006/tcp', '6007/tcp', '8080/tcp'}
    assert {f'{protocol.ENV_MAX_RUNTIME}=90', 'FROM_FILE=x'} <= set(body['Env'])
    assert body['Labels']['tg_pipeline.gpus'] == 'all'
    assert engine.volumes[volume]['Labels'] == {'tg_pipeline.project': 'proj-a', 'tg_pipeline.cache': 'pip'}


def test_device_ids_and_ipc_host(engine, client):
    engine.program(IMAGE)
    run(client, make_spec(engine, **resources(gpus='device=1', ipc='host')))
    host = created(engine)['HostConfig']
    assert host['DeviceRequests'][0]['DeviceIDs'] == ['1'] and host['DeviceRequests'][0]['Count'] == 0
    assert host['IpcMode'] == 'host' and 'ShmSize' not in host


def test_an_engine_without_gpus_is_one_paragraph_naming_the_host_and_the_fix(engine, client):
    engine.program(IMAGE, start_error='could not select device driver "" with capabilities: [[gpu]]')
    failure, _, _ = run(client, make_spec(engine, **resources(gpus='2')), where='remote gpu@box:2222')
    assert isinstance(failure, PipelineError)
    assert failure.message.startswith('job Greeter asks for GPUs (gpus = "2"), and the Docker engine on gpu@box:2222 '
                                      'cannot give any: could not select device driver')
    assert 'install the NVIDIA Container Toolkit on gpu@box:2222 (ssh -p 2222 gpu@box)' in failure.hint
    assert 'sudo apt-get install -y nvidia-container-toolkit' in failure.hint and 'gpus=0' in failure.hint
    assert engine.containers == {}  # the refused container is removed


def test_a_missing_host_path_is_refused_before_any_container(engine, client, tmp_path):
    engine.program(IMAGE)
    missing = tmp_path / 'not-there'
    failure, _, _ = run(client, make_spec(engine, **resources(mounts=(f'{missing}:/data',))))
    assert isinstance(failure, PipelineError)
    assert failure.message == (f'job Greeter mounts {missing} (mounts entry "{missing}:/data"), which does not exist '
                               f'on this machine')
    assert f'mkdir -p {missing}' in failure.hint
    assert engine.find('POST', '/containers/create') == []


def test_a_timed_out_run_is_recorded_and_reported_as_such(engine, client, tmp_path):
    record = {'exit_code': 124, 'reason': 'timeout', 'max_runtime_s': 5}
    engine.program(IMAGE, stdout=b'tick\n', exit_code=124,
                   files={protocol.EXIT_FILE: json.dumps(record), 'output/partial.txt': 'half'})
    paths = RunPaths(tmp_path / 'local')
    failure, _, _ = run(client, make_spec(engine, **resources(max_runtime_s=5)), paths)
    assert isinstance(failure, JobFailed)
    assert failure.message.startswith('job Greeter ran out of its time limit of 5 s (max_runtime_s; local run)')
    assert failure.exit_code == 124 and 'max_runtime_s=10 (0 = no limit)' in failure.hint
    run_id = failure.result.run_id
    saved = paths.read_record(run_id)
    assert saved['timed_out'] is True and saved['max_runtime_s'] == 5
    assert (paths.run_dir(run_id) / 'output' / 'partial.txt').read_text() == 'half'
    assert state_of_record(saved) == 'collected, exited 124 (timed out after 5 s)'
    with pytest.raises(JobFailed, match=r'ran out of its time limit of 5 s'):  # its saved result, later
        lifecycle.result(local_backend(client), lifecycle.Scope('Greeter', 'proj-a'), paths, run_id)


def test_cleanup_removes_this_projects_caches_only(engine, client):
    engine.program(IMAGE)
    run(client, make_spec(engine, **resources(caches=(('hf', '/hf'),))))
    run(client, make_spec(engine, project='proj-b', **resources(caches=(('hf', '/hf'),))))
    out = io.StringIO()
    assert remove_caches([client], 'proj-a', 'local', Console(out=out)) == ['proj-a-cache-hf']
    assert set(engine.volumes) == {'proj-b-cache-hf'}
    assert '1 cache volume(s) of project proj-a removed from local' in out.getvalue()


# --- swarm runs -------------------------------------------------------------------------------------------
REFERENCE = 'localhost:5000/tgtest-greeter@sha256:' + 'ab' * 32


@pytest.fixture
def swarm(engine):
    engine.program(IMAGE)
    engine.swarm(nodes=2)
    return SwarmBackend(Host('swarm', 'swarm local', engine.client()), SwarmSettings(schedule_timeout=1))


def service_body(engine, backend, **values) -> dict:
    """The service a swarm run of these resources asks the manager for."""
    spec = make_spec(engine, reference=REFERENCE, variants=('0',), **resources(**values))
    handle = backend.start(backend.prepare(spec), spec)
    return engine.services[handle.ref].body


def test_swarm_gpus_are_a_generic_resource_reservation(engine, swarm):
    engine.nodes[1]['Description']['Resources']['GenericResources'] = [
        {'NamedResourceSpec': {'Kind': 'gpu', 'Value': 'GPU-aaa'}},
        {'NamedResourceSpec': {'Kind': 'gpu', 'Value': 'GPU-bbb'}}]
    spec = service_body(engine, swarm, gpus='2', shm_gb=0.25, caches=(('pip', '/root/.cache/pip'),))['TaskTemplate']
    assert spec['Resources']['Reservations']['GenericResources'] == [
        {'DiscreteResourceSpec': {'Kind': 'gpu', 'Value': 2}}]
    mounts = {m['Target']: m for m in spec['ContainerSpec']['Mounts']}
    assert mounts['/dev/shm']['Type'] == 'tmpfs'
    assert mounts['/dev/shm']['TmpfsOptions'] == {'SizeBytes': 256 * 1024 ** 2}
    assert mounts['/root/.cache/pip']['Source'] == 'proj-a-cache-pip'
    assert mounts['/root/.cache/pip']['VolumeOptions']['Labels']['tg_pipeline.project'] == 'proj-a'


@pytest.mark.parametrize('values, words', [
    ({'gpus': '1'}, 'each reserves 1 GPU(s) (generic resource "gpu"), and no ready node of the swarm on swarm local '
                    'advertises that many (2 ready, the most: 0)'),
    ({'gpus': 'all'}, 'a swarm task reserves a number of GPUs, not "all" or device ids'),
    ({'ipc': 'host'}, "ipc = 'host' has no form on Docker Swarm"),
    ({'ports': ('6006',)}, "ports = ('6006',) has no form on Docker Swarm"),
])
def test_swarm_refuses_what_it_cannot_place_before_any_service(engine, swarm, values, words):
    with pytest.raises(SwarmError) as caught:
        service_body(engine, swarm, **values)
    assert words in caught.value.message and caught.value.hint
    assert engine.find('POST', '/services/create') == []


@pytest.mark.parametrize('what', ['exec', 'forward'])
def test_exec_and_forward_say_they_do_not_reach_a_swarm_run(engine, swarm, tmp_path, what):
    handle = RunHandle('r1', 'swarm', 'swarm local', 'svc', 'tg-x', {'job': 'Greeter'}, 'running', True)
    with pytest.raises(SwarmError, match=f'{what} is not supported for swarm runs') as caught:
        swarm.exec(handle, 'ls') if what == 'exec' else swarm.forward(handle, 80, 8080)
    assert f'doit {what} job=Greeter where=remote' in caught.value.hint
    scope, paths = lifecycle.Scope('Greeter', 'proj-a'), RunPaths(tmp_path / 'swarm')
    with pytest.raises(SwarmError, match=f'{what} is not supported for swarm runs'):  # before looking for runs
        exec_command(swarm, scope, paths, None, 'ls') if what == 'exec' else \
            forward(swarm, scope, paths, None, 80, 8080)
    assert engine.find('GET', '/services') == []


def test_a_timed_out_variant_is_named(tmp_path):
    result = RunResult('r1', 'swarm', 'swarm local', 'Greeter', run_dir=Path(tmp_path), variants=[
        {'variant': 0, 'label': 'lr=1', 'state': 'failed', 'exit_code': 124, 'error': 'task: non-zero exit (124)',
         'ok': False, 'timed_out': True, 'max_runtime_s': 5}])
    assert 'variant 0 (lr=1): failed exit 124 (ran out of its time limit of 5 s)' in failure(result).message
