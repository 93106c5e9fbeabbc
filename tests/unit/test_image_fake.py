"""Image build and registry push over the fake engine, through the public functions
(``image.build.build_image``, ``image.registry.push``): the image id / digest recorded, the build
log streamed, and each failure quoted with the hint a person needs."""
import json

import pytest

from fakes.engine import FakeEngine
from tg_pipeline.console import Console
from tg_pipeline.errors import BuildError, RegistryError
from tg_pipeline.image.build import build_image, image_up_to_date
from tg_pipeline.image.registry import push, push_up_to_date, registry_digest
from tg_pipeline.console.progress import take_step_notes

QUIET = Console(quiet=True)
TAG = 'tgtest-greeter:0.0.1'
REFERENCE = 'registry.test:5000/tgtest-greeter:0.0.1'
DOCKERFILE = '''# as tg_pipeline's template writes it
FROM python:3.11-slim
COPY requirements.txt /tmp/tg_pipeline/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check -r /tmp/tg_pipeline/requirements.txt
LABEL tg_pipeline.package="greeter" tg_pipeline.version="0.0.1" tg_pipeline.module="greeter__0_0_1" \\
      tg_pipeline.job="Greeter"
ENV PYTHONPATH=/opt/tg_pipeline/greeter PYTHONUNBUFFERED=1
CMD ["python", "-m", "greeter__0_0_1"]
ADD greeter.tar.gz /opt/tg_pipeline/
'''
PIP_LINES = ['Collecting nosuchpkg==9.9',
             'ERROR: Could not find a version that satisfies the requirement nosuchpkg==9.9 (from versions: none)',
             'ERROR: No matching distribution found for nosuchpkg==9.9']


@pytest.fixture
def engine():
    engine = FakeEngine()
    engine.add_image('python:3.11-slim', layers=3)
    return engine


@pytest.fixture
def context(tmp_path):
    folder = tmp_path / 'context'
    folder.mkdir()
    (folder / 'Dockerfile').write_text(DOCKERFILE)
    (folder / 'requirements.txt').write_text('requests==2.31.0\n')
    (folder / 'greeter.tar.gz').write_bytes(b'not really a tarball')
    return folder


def test_build_records_the_image_id_and_keeps_its_log_quiet(engine, client, context, tmp_path, capsys):
    target = tmp_path / 'image.json'
    take_step_notes()
    image_id = build_image(context, TAG, target=target, client=client)
    assert json.loads(target.read_text()) == {'image_id': image_id, 'tag': TAG}
    image = client.images.get(TAG)
    assert image.id == image_id
    assert {k: v for k, v in image.labels.items() if k.startswith('tg_pipeline.')} == {
        'tg_pipeline.package': 'greeter', 'tg_pipeline.version': '0.0.1', 'tg_pipeline.module': 'greeter__0_0_1',
        'tg_pipeline.job': 'Greeter'}
    assert capsys.readouterr().out == ''  # not a terminal, and shorter than a progress line's interval
    assert take_step_notes() == []  # the fake engine's RUN steps never say "Running in" or "Using cache"
    call = engine.last('POST', '/build')
    assert call.params['t'] == TAG and call.flag('rm') and call.flag('forcerm')
    assert engine.builds[-1].files['requirements.txt'] == b'requests==2.31.0\n'
    assert image_up_to_date(target, client=client)
    client.images.remove(TAG, force=True)
    assert not image_up_to_date(target, client=client)


def test_verbose_build_prints_its_whole_log_as_it_comes(client, context, capsys):
    build_image(context, TAG, client=client, console=Console(verbose=True))
    out = capsys.readouterr().out
    assert out.startswith('Step 1/7 : FROM python:3.11-slim\n') and f'Successfully tagged {TAG}\n' in out


def test_a_failed_build_prints_its_whole_log_even_when_not_verbose(engine, client, context, capsys):
    engine.fail_build(TAG, output=PIP_LINES)
    with pytest.raises(BuildError):
        build_image(context, TAG, client=client)
    out = capsys.readouterr().out
    assert out.startswith(f'--- build log of {TAG} ---\nStep 1/7 : FROM python:3.11-slim\n')
    assert f'{PIP_LINES[2]}\n' in out and out.endswith('--- end of build log ---\n')


def test_silent_build_prints_nothing_and_same_context_same_image(client, context, capsys):
    first = build_image(context, TAG, console=QUIET, client=client)
    assert build_image(context, TAG, console=QUIET, client=client) == first
    (context / 'requirements.txt').write_text('requests==2.32.0\n')
    assert build_image(context, TAG, console=QUIET, client=client) != first
    assert capsys.readouterr().out == ''


def test_pip_failure_line_is_quoted(engine, client, context, tmp_path):
    engine.fail_build(TAG, output=PIP_LINES)
    target = tmp_path / 'image.json'
    with pytest.raises(BuildError) as info:
        build_image(context, TAG, target=target, console=QUIET, client=client)
    error = info.value
    assert error.message.startswith(f'pip cannot install the dependencies of {TAG} (on this machine): '
                                    f'{PIP_LINES[1][len("ERROR: "):]}; {PIP_LINES[2][len("ERROR: "):]}\n')
    assert error.exit_code == 1 and error.command == f'docker build -t {TAG} {context}'
    assert 'ERROR: No matching distribution found for nosuchpkg==9.9' in error.output_tail
    assert 'pipeline.toml' in error.hint
    assert not target.exists() and engine.find_image(TAG) is None


@pytest.mark.parametrize('step, message, hint', [
    (None, 'failed to register layer: write /usr/lib/x: no space left on device', 'docker system prune'),
    ('FROM', "pull access denied for nosuch/base, repository does not exist or may require 'docker login'",
     'base_image'),
    ('ADD', 'ADD failed: file not found in build context', None),
])
def test_other_build_failures_and_their_hints(engine, client, context, step, message, hint):
    engine.fail_build(TAG, error=message, step=step, code=1)
    with pytest.raises(BuildError) as info:
        build_image(context, TAG, console=QUIET, client=client)
    assert info.value.message.startswith(f'building image {TAG} failed')
    assert message in info.value.output_tail
    assert (hint in info.value.hint) if hint else info.value.hint is None


def pushed_setup(engine, tmp_path):
    image = engine.add_image(TAG, layers=2)
    image_target = tmp_path / 'image.json'
    image_target.write_text(json.dumps({'image_id': image.id, 'tag': TAG}))
    return image, image_target


def test_push_records_the_digest_and_stays_up_to_date(engine, client, tmp_path, capsys):
    image, image_target = pushed_setup(engine, tmp_path)
    target = tmp_path / 'push.json'
    take_step_notes()
    digest = push(image.id, REFERENCE, target=target, client=client)
    exact = f'{REFERENCE}-{image.id.split(":")[-1][:12]}'  # this build's own tag: another build never re-points it
    assert json.loads(target.read_text()) == {'reference': REFERENCE, 'digest': digest, 'image_id': image.id,
                                              'exact': exact}
    assert engine.last('POST', '/images/*/tag').params == {'repo': 'registry.test:5000/tgtest-greeter',
                                                            'tag': '0.0.1', 'force': '0'}
    assert capsys.readouterr().out == ''  # no line per layer, nor per tag: one progress bar (stderr)
    [note] = take_step_notes()
    assert note.startswith(f'{REFERENCE}: 2 of 2 layers sent, 2.0 MB in ')
    assert registry_digest(client, REFERENCE) == digest
    assert push_up_to_date(target, image_target, client=client)
    assert push(image.id, REFERENCE, client=client, console=QUIET) == digest  # layers already there
    del engine.registry('registry.test:5000').manifests[exact.split('/', 1)[1]]
    assert not push_up_to_date(target, image_target, client=client)  # the registry lost it


@pytest.mark.parametrize('settings, auth, said, hint', [
    ({'credentials': ('ann', 'pw')}, None, 'no basic auth credentials', 'wants a login'),
    ({'credentials': ('ann', 'pw')}, {'username': 'ann', 'password': 'wrong'},
     'unauthorized: authentication required', 'refused the credentials'),
    ({'unreachable': True}, None, 'connect: connection refused', 'is unreachable from this Docker engine'),
    ({'insecure_http': True}, None, 'server gave HTTP response to HTTPS client', 'speaks plain HTTP'),
    ({'error_status': 500, 'error': 'received unexpected HTTP status: 503 Service Unavailable'}, None,
     'received unexpected HTTP status: 503', None),
])
def test_push_errors_carry_a_hint(engine, client, tmp_path, settings, auth, said, hint):
    image, _ = pushed_setup(engine, tmp_path)
    engine.registry('registry.test:5000', **settings)
    target = tmp_path / 'push.json'
    with pytest.raises(RegistryError) as info:
        push(image.id, REFERENCE, target=target, auth=auth, console=QUIET, client=client)
    error = info.value
    assert error.message.startswith(f'pushing {REFERENCE} failed: ') and said in error.message
    assert error.command == f'docker push {REFERENCE}'
    assert (hint in error.hint and 'registry.test:5000' in error.hint) if hint else error.hint is None
    assert not target.exists()
    assert registry_digest(client, REFERENCE, auth) is None


def test_push_with_the_right_credentials(engine, client, tmp_path):
    image, _ = pushed_setup(engine, tmp_path)
    engine.registry('registry.test:5000', credentials=('ann', 'pw'))
    auth = {'username': 'ann', 'password': 'pw'}
    digest = push(image.id, REFERENCE, auth=auth, console=QUIET, client=client)
    assert registry_digest(client, REFERENCE, auth) == digest
    assert registry_digest(client, REFERENCE) is None  # no login: refused, not an exception


def test_a_failed_build_says_its_log_once_without_colour_codes_and_names_its_host(engine, client, context, capsys):
    coloured = ['Collecting nosuchpkg==9.9', '\x1b[91mERROR: No matching distribution found for nosuchpkg==9.9',
                '\x1b[0m']
    engine.fail_build(TAG, output=coloured)
    with pytest.raises(BuildError) as info:
        build_image(context, TAG, client=client, console=Console(tty=False), host='u@h:22')
    out = capsys.readouterr().out
    assert out.startswith(f'--- build log of {TAG} (built on u@h:22) ---\nStep 1/7 : ')
    assert 'ERROR: No matching distribution found for nosuchpkg==9.9\n' in out and '\x1b' not in out
    rendered = info.value.render()
    assert rendered.startswith(f'ERROR: pip cannot install the dependencies of {TAG} (on u@h:22): No matching '
                               'distribution found for nosuchpkg==9.9\n')
    assert 'last output' not in rendered and 'command:' not in rendered and '\x1b' not in rendered  # said once
    assert rendered.count('\nTIP: ') == 1


def test_a_build_without_network_to_the_index_names_the_host_that_built(engine, client, context):
    engine.fail_build(TAG, output=["WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError("
                                   "'<urllib3.connection.HTTPSConnection>: Failed to establish a new connection: "
                                   "[Errno 101] Network is unreachable')': /simple/six/",
                                   'ERROR: Could not find a version that satisfies the requirement six (from versions: '
                                   'none)'])
    with pytest.raises(BuildError) as info:
        build_image(context, TAG, client=client, console=QUIET, host='remote u@h:22')
    assert info.value.message.startswith(f'the build of {TAG} on remote u@h:22 cannot reach the package index: ')
    assert info.value.hint.startswith('give the Docker engine of remote u@h:22 network access to the index')
    assert 'build_on=local' in info.value.hint
