"""The fake engine behaves as docker-py expects of an engine: its errors map to docker-py's exception
classes, its log stream parses with docker-py's own frame helpers, its filters and lists select
as the engine's do, and its build / push / pull streams read through docker-py's stream helpers."""
import io
import pickle
import socket
import tarfile

import docker
import pytest
import urllib3
from docker.utils.socket import consume_socket_output, demux_adaptor, frames_iter

from fakes.engine import FakeEngineBlocked, FakeEngineError


def started(client, image='job:1', **kwargs):
    container = client.containers.create(image, **kwargs)
    container.start()
    return container


def test_daemon_endpoints_and_version_negotiation(engine):
    client = engine.client(version='auto')
    assert client.api.api_version == '1.41'
    assert client.ping() is True
    assert client.version()['ApiVersion'] == '1.41'
    assert client.info()['Swarm']['LocalNodeState'] == 'inactive'
    assert [(c.method, c.path, c.version) for c in engine.calls[:2]] == [('GET', '/version', None),
                                                                         ('GET', '/_ping', '1.41')]


def test_errors_map_to_docker_py_exception_classes(engine, client):
    with pytest.raises(docker.errors.ImageNotFound) as missing_image:
        client.containers.create('never-built:1')
    assert missing_image.value.explanation == 'No such image: never-built:1'
    assert missing_image.value.status_code == 404
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get('never-built:1')
    with pytest.raises(docker.errors.NotFound) as missing_container:
        client.containers.get('no-such-container')
    assert not isinstance(missing_container.value, docker.errors.ImageNotFound)
    assert missing_container.value.explanation == 'No such container: no-such-container'
    engine.program('job:1')
    first = client.containers.create('job:1', name='twin')
    with pytest.raises(docker.errors.APIError) as clash:
        client.containers.create('job:1', name='twin')
    assert clash.value.status_code == 409 and 'is already in use by container' in clash.value.explanation
    first.start()
    with pytest.raises(docker.errors.APIError) as running:
        first.remove()
    assert running.value.status_code == 409 and 'cannot remove a running container' in str(running.value)
    with pytest.raises(docker.errors.NotFound) as no_file:
        first.get_archive('/nowhere')
    assert 'Could not find the file /nowhere' in no_file.value.explanation
    with pytest.raises(FakeEngineError, match='does not serve POST /containers/.*/pause'):
        first.pause()


def test_frames_parse_with_docker_py_helpers(engine, client):
    engine.program('job:1', output=[('stdout', b'out 1\n'), ('stderr', b'err 1\n'), ('stdout', b'out 2\n')])
    container = started(client)
    response = client.api._get(client.api._url('/containers/{0}/logs', container.id),
                               params={'stdout': 1, 'stderr': 1})
    assert response.headers['Content-Type'] == 'application/vnd.docker.raw-stream'
    left, right = socket.socketpair()  # docker-py's frame reader polls a real file descriptor
    try:
        left.sendall(response.content)
        left.shutdown(socket.SHUT_WR)
        frames = list(frames_iter(right, tty=False))
    finally:
        left.close()
        right.close()
    assert frames == [(1, b'out 1\n'), (2, b'err 1\n'), (1, b'out 2\n')]
    assert consume_socket_output((demux_adaptor(*f) for f in frames), demux=True) == (b'out 1\nout 2\n', b'err 1\n')
    assert container.logs() == b'out 1\nerr 1\nout 2\n'  # docker-py's buffered demultiplexer
    assert container.logs(stdout=False) == b'err 1\n'


def test_followed_stream_is_read_incrementally_and_ends_the_run(engine, client):
    engine.program('job:1', stdout=b'a\nb\n', exit_code=4)
    container = started(client)
    api = client.api
    response = api._get(api._url('/containers/{0}/logs', container.id), stream=True,
                        params={'stdout': 1, 'stderr': 1, 'follow': 1})
    sock = api._get_raw_response_socket(response)
    api._disable_socket_timeout(sock)
    assert sock.gettimeout() is None and sock._response is response
    assert response.raw.read(8) == b'\x01\x00\x00\x00\x00\x00\x00\x02'
    assert response.raw.read(2) == b'a\n'
    assert engine.container(container.id).status == 'running'  # not read to its end yet
    assert response.raw.read(10) == b'\x01\x00\x00\x00\x00\x00\x00\x02b\n'
    assert response.raw.read(8) == b''
    state = engine.container(container.id)
    assert (state.status, state.exit_code) == ('exited', 4)
    assert container.wait() == {'Error': None, 'StatusCode': 4}


def test_docker_py_follow_stream(engine, client):
    engine.program('job:1', stdout=b'one\ntwo\n', stderr=b'three\n')
    container = started(client)
    assert list(container.logs(stream=True, follow=True)) == [b'one\n', b'two\n', b'three\n']
    container.reload()
    assert container.status == 'exited'


def test_label_name_status_and_ancestor_filters(engine, client):
    engine.program('job:1')
    engine.program('other:2')
    a = client.containers.create('job:1', name='run-a', labels={'tg.job': 'A', 'tg.run': '1'})
    b = client.containers.create('job:1', name='run-b', labels={'tg.job': 'B', 'tg.run': '2'})
    c = client.containers.create('other:2', name='misc', labels={'x': 'y'})
    a.start()

    def names(**kwargs):
        return sorted(x.name for x in client.containers.list(**kwargs))
    assert names() == ['run-a']  # running only
    assert names(all=True) == ['misc', 'run-a', 'run-b']
    assert names(all=True, filters={'label': 'tg.job'}) == ['run-a', 'run-b']
    assert names(all=True, filters={'label': 'tg.job=B'}) == ['run-b']
    assert names(all=True, filters={'label': ['tg.job', 'tg.run=1']}) == ['run-a']  # labels AND
    assert names(all=True, filters={'name': 'run-'}) == ['run-a', 'run-b']
    assert names(filters={'status': 'created'}) == ['misc', 'run-b']  # a status filter lists all
    assert names(all=True, filters={'ancestor': 'other:2'}) == ['misc']
    assert names(all=True, filters={'ancestor': engine.image('job:1').id}) == ['run-a', 'run-b']
    assert [x.id for x in client.containers.list(all=True, filters={'id': c.id[:10]})] == [c.id]
    with pytest.raises(docker.errors.APIError, match="invalid filter 'colour'"):
        client.containers.list(filters={'colour': 'red'})
    call = engine.last('GET', '/containers/json')
    assert call.json_param('filters') == {'colour': ['red']} and call.params['all'] == '0'
    assert b.labels == {'tg.job': 'B', 'tg.run': '2'}


def test_container_inspect_merges_image_labels_and_env(engine, client):
    engine.add_image('job:1', labels={'from.image': '1', 'both': 'image'}, env=['PATH=/bin', 'K=image'])
    container = client.containers.create('job:1', labels={'both': 'container'}, environment={'K': 'v'},
                                          nano_cpus=2 * 10 ** 9, init=True)
    config = container.attrs['Config']
    assert config['Labels'] == {'from.image': '1', 'both': 'container'}
    assert config['Env'] == ['PATH=/bin', 'K=v'] and config['Image'] == 'job:1' and config['Tty'] is False
    assert container.attrs['HostConfig'] == engine.last('POST', '/containers/create').body['HostConfig']
    assert container.attrs['HostConfig']['NanoCpus'] == 2 * 10 ** 9 and container.attrs['HostConfig']['Init']
    assert container.attrs['Image'] == engine.image('job:1').id
    assert container.attrs['State']['StartedAt'] == '0001-01-01T00:00:00Z'


def test_archive_of_files_or_of_a_folder(engine, client, tmp_path):
    (tmp_path / 'out' / 'output').mkdir(parents=True)
    (tmp_path / 'out' / 'result.pkl').write_bytes(pickle.dumps([1, 2]))
    (tmp_path / 'out' / 'output' / 'plot.txt').write_text('plot')
    engine.program('job:1', files=tmp_path / 'out')
    container = started(client)
    with pytest.raises(docker.errors.NotFound):
        container.get_archive('/tg_pipeline/run')  # the job has not ended: nothing written yet
    container.wait()
    stream, stat = container.get_archive('/tg_pipeline/run')
    assert stat['name'] == 'run' and stat['mode'] & (1 << 31)
    with tarfile.open(fileobj=io.BytesIO(b''.join(stream))) as tar:
        assert sorted(tar.getnames()) == ['run', 'run/output', 'run/output/plot.txt', 'run/result.pkl']
        assert pickle.loads(tar.extractfile('run/result.pkl').read()) == [1, 2]
    stream, stat = container.get_archive('/tg_pipeline/run/result.pkl')
    assert stat == {**stat, 'name': 'result.pkl', 'size': len(pickle.dumps([1, 2])), 'mode': 0o644}


def test_stop_kill_oom_and_runs_until_stopped(engine, client):
    engine.program('forever:1', stdout=b'tick\n', run_until_stopped=True)
    engine.program('hog:1', oom=True)
    forever = started(client, 'forever:1')
    engine.finish()  # time passes: it keeps running
    assert engine.container(forever.id).status == 'running'
    with pytest.raises(FakeEngineBlocked):
        forever.wait()
    with pytest.raises(FakeEngineBlocked):
        list(forever.logs(stream=True, follow=True))
    assert forever.logs() == b'tick\n'  # not following: what it printed so far
    forever.stop(timeout=5)
    assert engine.last('POST', '/containers/*/stop').params == {'t': '5'}
    forever.reload()
    assert (forever.status, forever.attrs['State']['ExitCode']) == ('exited', 143)
    with pytest.raises(docker.errors.APIError, match='is not running'):
        forever.kill()
    forever.start()
    forever.kill()
    assert forever.wait()['StatusCode'] == 137
    hog = started(client, 'hog:1')
    assert hog.wait()['StatusCode'] == 137
    hog.reload()
    assert hog.attrs['State']['OOMKilled'] is True
    again = started(client, 'forever:1')
    again.remove(force=True)
    assert [c.id for c in engine.removed] == [again.id] and again.id not in engine.containers


def test_start_error_and_broken_stream(engine, client):
    engine.program('bad:1', start_error='OCI runtime create failed: exec: "python": not found')
    container = client.containers.create('bad:1')
    with pytest.raises(docker.errors.APIError) as info:
        container.start()
    assert info.value.status_code == 500 and 'OCI runtime' in info.value.explanation
    engine.program('flaky:1', stdout=b'1\n2\n3\n', break_stream=(1, ConnectionResetError('reset by peer')))
    flaky = started(client, 'flaky:1')
    assert list(flaky.logs(stream=True, follow=True)) == [b'1\n']  # docker-py ends a broken stream quietly
    api = client.api
    response = api._get(api._url('/containers/{0}/logs', flaky.id), stream=True,
                        params={'stdout': 1, 'stderr': 1, 'follow': 1})
    assert response.raw.read(10) == b'\x01\x00\x00\x00\x00\x00\x00\x021\n'
    with pytest.raises(urllib3.exceptions.ProtocolError, match='reset by peer'):
        response.raw.read(8)
    assert engine.container(flaky.id).status == 'running'


def test_images_tag_list_and_remove(engine, client):
    image = engine.add_image('app:1', labels={'tg_pipeline.job': 'A'})
    assert client.images.get('app:1').id == image.id == client.images.get(image.id[7:19]).id
    assert client.api.tag(image.id, 'registry.test:5000/app', '1') is True
    assert client.images.get('app:1').tags == ['app:1', 'registry.test:5000/app:1']
    assert [i.id for i in client.images.list(filters={'label': 'tg_pipeline.job=A'})] == [image.id]
    assert client.images.list(name='nothing*') == []
    client.images.remove('registry.test:5000/app:1')  # another tag is left: only untagged
    assert client.images.get(image.id).tags == ['app:1']
    engine.program('app:1')
    client.containers.create('app:1')
    with pytest.raises(docker.errors.APIError, match='must force'):
        client.images.remove('app:1')
    client.images.remove('app:1', force=True)
    assert engine.images == {}


DOCKERFILE = b'''# generated
FROM base:1
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
LABEL tg_pipeline.package="greeter" \\
      tg_pipeline.version="0.0.1"
CMD ["python", "-m", "greeter"]
'''


def context(dockerfile=DOCKERFILE, requirements=b'requests\n'):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        for name, data in (('Dockerfile', dockerfile), ('requirements.txt', requirements)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_build_streams_events_and_records_labels(engine, client):
    engine.add_image('base:1', labels={'from.base': 'yes'})
    events = list(client.api.build(fileobj=context(), custom_context=True, tag='greeter:0.0.1', decode=True,
                                   labels={'extra': '1'}))
    assert events[0] == {'stream': 'Step 1/5 : FROM base:1\n'}
    image_id = next(e['aux']['ID'] for e in events if 'aux' in e)
    assert events[-1] == {'stream': 'Successfully tagged greeter:0.0.1\n'}
    image = client.images.get('greeter:0.0.1')
    assert image.id == image_id
    assert image.labels == {'from.base': 'yes', 'tg_pipeline.package': 'greeter', 'tg_pipeline.version': '0.0.1',
                            'extra': '1'}
    assert image.attrs['Config']['Cmd'] == ['python', '-m', 'greeter']
    assert len(image.attrs['RootFS']['Layers']) == len(engine.image('base:1').layers) + 2
    assert engine.builds[-1].files['requirements.txt'] == b'requests\n'
    again, _ = client.images.build(fileobj=context(), custom_context=True, tag='greeter:0.0.1',
                                   labels={'extra': '1'})
    assert again.id == image_id  # same context, same image
    changed, _ = client.images.build(fileobj=context(requirements=b'numpy\n'), custom_context=True,
                                     tag='greeter:0.0.1', labels={'extra': '1'})
    assert changed.id != image_id and client.images.get(image_id).tags == []


def test_programmed_build_failure(engine, client):
    engine.fail_build('greeter:0.0.1', output=['ERROR: No matching distribution found for nosuch==9'])
    with pytest.raises(docker.errors.BuildError) as info:
        client.images.build(fileobj=context(), custom_context=True, tag='greeter:0.0.1')
    assert "The command '/bin/sh -c pip install -r /tmp/requirements.txt' returned a non-zero code: 1" in info.value.msg
    log = [e.get('stream', '') for e in info.value.build_log]
    assert 'ERROR: No matching distribution found for nosuch==9\n' in log
    assert 'Step 3/5 : RUN pip install -r /tmp/requirements.txt\n' in log and engine.builds[-1].image_id is None


def test_push_inspect_distribution_and_pull(engine, client):
    image = engine.add_image('registry.test:5000/app:1')
    events = list(client.api.push('registry.test:5000/app', '1', stream=True, decode=True))
    assert events[0] == {'status': 'The push refers to repository [registry.test:5000/app]'}
    digest = events[-1]['aux']['Digest']
    assert [e['status'] for e in events if e.get('id') == image.layers[0][7:19]][-1] == 'Pushed'
    assert client.api.inspect_distribution('registry.test:5000/app:1')['Descriptor']['digest'] == digest
    again = list(client.api.push('registry.test:5000/app', '1', stream=True, decode=True))
    assert {'status': 'Layer already exists', 'progressDetail': {}, 'id': image.layers[1][7:19]} in again
    client.images.remove('registry.test:5000/app:1')
    pulled = client.images.pull('registry.test:5000/app', tag='1')
    assert pulled.id == image.id and pulled.attrs['RepoDigests'] == [f'registry.test:5000/app@{digest}']
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_distribution('registry.test:5000/app:2')
    with pytest.raises(docker.errors.ImageNotFound):  # the Hub says "repository does not exist"
        client.images.pull('nosuch/thing', tag='1')
    published = engine.publish('registry.test:5000/other:3', labels={'k': 'v'})
    assert client.images.pull('registry.test:5000/other:3').labels == {'k': 'v'}
    assert client.images.get('registry.test:5000/other:3').attrs['RepoDigests'][0].endswith(published)


def test_registry_refusals(engine, client):
    engine.add_image('registry.test:5000/app:1')
    registry = engine.registry('registry.test:5000', credentials=('ann', 'secret'))

    def push_error(**kwargs):
        events = list(client.api.push('registry.test:5000/app', '1', stream=True, decode=True, **kwargs))
        return [e['error'] for e in events if 'error' in e]
    assert push_error() == ['no basic auth credentials']
    assert push_error(auth_config={'username': 'ann', 'password': 'wrong'}) == [
        'unauthorized: authentication required']
    assert push_error(auth_config={'username': 'ann', 'password': 'secret'}) == []
    assert engine.last('POST', '/images/*/push').headers['X-Registry-Auth']
    with pytest.raises(docker.errors.APIError) as denied:
        client.api.inspect_distribution('registry.test:5000/app:1')
    assert denied.value.status_code == 401
    registry.unreachable = True
    assert 'connect: connection refused' in push_error(auth_config={'username': 'ann', 'password': 'secret'})[0]
    engine.registry('registry.test:5000', unreachable=False, error_status=500, error='registry is down')
    with pytest.raises(docker.errors.APIError, match='registry is down'):
        client.api.push('registry.test:5000/app', '1', stream=True, decode=True)


def test_requests_are_recorded_verbatim(engine, client):
    engine.program('job:1')
    client.containers.create('job:1', name='n1', environment={'TRICKY': 'a b;$(x) "q"\n'},
                             labels={'l': 'v'}, mem_limit=2 ** 30)
    call = engine.last('POST', '/containers/create')
    assert (call.method, call.path, call.version, call.params) == ('POST', '/containers/create', '1.41',
                                                                   {'name': 'n1'})
    assert call.body['Env'] == ['TRICKY=a b;$(x) "q"\n'] and call.body['Labels'] == {'l': 'v'}
    assert call.body['HostConfig']['Memory'] == 2 ** 30
    assert engine.find('GET', '/containers/*/json')[0].path == f'/containers/{engine.container("n1").id}/json'
