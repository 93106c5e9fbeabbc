"""Registry-free transfer over SSH: only the layers the remote lacks travel, then the image runs there."""
import json
import re

import pytest

from tg_pipeline.console import Console
from tg_pipeline.hosts.engine import local_engine
from tg_pipeline.ssh.connection import Remote, RemoteTarget
from tg_pipeline.image.transfer import remote_layers, transfer

from target import TARGET


QUIET = Console(quiet=True)

pytestmark = pytest.mark.remote


def test_ssh_transfer_sends_only_missing_layers(project, remote_docker, docker_client):
    import uuid
    # code no engine has seen: its layer is surely missing on the (shared) remote, whatever else it holds
    project.edit('jobs/example_job.py', "log('SUCCESS')", f"log('SUCCESS {uuid.uuid4().hex}')")
    project.doit('build_image', 'job=ExampleJob')
    image_id = json.loads(project.read('build/ExampleJob/image.json'))['image_id']
    base = docker_client.images.get('python:3.11-slim')
    with Remote(RemoteTarget(TARGET.remote)) as remote:
        transfer(local_engine(), remote.docker, base.id, 'python:3.11-slim', console=Console(quiet=True))
        before = remote_layers(remote.docker)
        local_layers = docker_client.api.inspect_image(image_id)['RootFS']['Layers']
        missing = [layer for layer in local_layers if layer not in before]
        assert missing and len(missing) < len(local_layers)  # the base is there, the job's layers are not

        stats = transfer(local_engine(), remote.docker, image_id, 'tgtest-examplejob:0.0.0', console=QUIET)
        assert sorted(stats.sent) == sorted(missing)
        assert stats.layers_sent == len(missing) and stats.layers_total == len(local_layers)
        base_size = docker_client.api.inspect_image(base.id)['Size']
        assert stats.bytes_sent < base_size / 2  # the base did not travel again
        assert remote_docker.api.inspect_image(image_id)['Id'] == image_id  # by id: the tag is shared with other clones

        again = transfer(local_engine(), remote.docker, image_id, 'tgtest-examplejob:0.0.0', console=QUIET)
        assert (again.layers_sent, again.bytes_sent) == (0, 0)


def test_run_remote_over_ssh_transfer_without_registry(project, remote_docker):
    project.edit('jobs/example_job.py', "log('SUCCESS')", "log('SUCCESS over ssh')")
    result = project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'INFO: SUCCESS over ssh' in result.stdout
    assert 'transfer: ' in result.stdout
    assert 'push:ExampleJob' not in result.stdout  # no registry involved
    image_id = json.loads(project.read('build/ExampleJob/image.json'))['image_id']
    assert remote_docker.api.inspect_image(image_id)['Id'] == image_id  # by id: the tag is shared with other clones
    again = project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=')
    assert 'has the image already: nothing sent' in again.stdout


def test_a_registry_free_remote_run_leaves_the_local_engine_alone_until_a_local_step_needs_the_image(
        project, remote_docker, docker_client):
    """run_remote with transfer=ssh composes the image here and loads it on the remote only; run_local afterwards
    loads the same image (same id) here, and push would too."""
    import uuid
    import docker
    project.edit('jobs/example_job.py', "log('SUCCESS')", f"log('SUCCESS {uuid.uuid4().hex}')")
    result = project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=', env={'EXAMPLE_VARIABLE': 'x'})
    assert re.search(r'^build_image:ExampleJob .*, for the remote\)$', result.stdout, re.MULTILINE)
    image_id = json.loads(project.read('build/ExampleJob/image.json'))['image_id']
    assert remote_docker.api.inspect_image(image_id)['Id'] == image_id
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.api.inspect_image(image_id)
    again = project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'build_image:ExampleJob ' not in again.stdout  # the composition is current: nothing composed again
    local = project.doit('run_local', 'job=ExampleJob', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'build_image:ExampleJob' in local.stdout and 'SUCCESS' in local.stdout
    assert docker_client.api.inspect_image(image_id)['Id'] == image_id  # loaded here now: the same image
    assert json.loads(project.read('build/ExampleJob/image.json'))['image_id'] == image_id


def test_transfer_defaults_to_ssh_without_a_registry(project, remote_docker):
    project.edit('pipeline.toml', f'address = "{TARGET.registry}"', 'address = ""')
    result = project.doit('run_remote', 'job=ExampleJob')
    assert 'transfer: ' in result.stdout and 'SUCCESS' in result.stdout


def test_bad_transfer_value_is_a_config_error(project):
    result = project.doit('run_remote', 'job=ExampleJob', 'transfer=carrier-pigeon', check=False)
    assert result.returncode == 2
    assert 'remote.transfer must be "registry" or "ssh"' in result.stderr


class _NoSave:
    """The local engine, except that ``docker save`` (what a code edit must not need) fails the test."""

    def __init__(self, client):
        self.client, self.api = client, self

    def __getattr__(self, name):
        return getattr(self.client.api, name)

    def get_image(self, *args, **kwargs):
        raise AssertionError('docker save was called for a code edit')


def test_code_edit_over_ssh_sends_config_and_code_layer_only(project, remote_docker, docker_client):
    import types
    import uuid
    from tg_pipeline.image.job_image import recorded_composed
    from tg_pipeline.image.transfer import send_job_image
    project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=', env={'EXAMPLE_VARIABLE': 'x'})
    project.edit('jobs/example_job.py', "log('SUCCESS')", f"log('SUCCESS {uuid.uuid4().hex}')")
    project.doit('build_image', 'job=ExampleJob')
    build = project.path('build/ExampleJob')
    image = recorded_composed(types.SimpleNamespace(image=build / 'image.json', image_config=build / 'image_config.json',
                                                    code_layer=build / 'code_layer.tar'))
    assert image is not None and image.image_id == json.loads(project.read('build/ExampleJob/image.json'))['image_id']
    with Remote(RemoteTarget(TARGET.remote)) as remote:
        stats = send_job_image(_NoSave(docker_client), remote.docker, image, 'tgtest-examplejob:0.0.0',
                               'tgtest-examplejob:0.0.0-deps', console=Console(quiet=True))
    assert stats.sent == [image.diff_id] and stats.layers_sent == 1
    layer_size = (build / 'code_layer.tar').stat().st_size
    assert 0 < stats.bytes_sent < layer_size  # the archive is gzipped: less than the layer itself
    assert remote_docker.api.inspect_image(image.image_id)['RootFS']['Layers'][-1] == image.diff_id
    result = project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'has the image already: nothing sent' in result.stdout and 'SUCCESS ' in result.stdout


def test_new_dependencies_over_ssh_send_the_dependency_layers_once(project, remote_docker):
    import uuid
    marker = uuid.uuid4().int % 10**9  # requirements no engine has installed: a pip layer the remote lacks
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', f'source_roots = ["jobs"]\ndependencies = ["six!=0.0.{marker}"]')
    project.edit('jobs/example_job.py', "log('SUCCESS')", "import six\n        log('SUCCESS with ' + six.__name__)")
    first = project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'INFO: SUCCESS with six' in first.stdout
    sent = re.search(r'transfer: (\d+) of (\d+) layers sent', first.stdout)
    assert sent and int(sent.group(1)) >= 2  # the new pip layer (and its label-less neighbours), then the code layer
    deps = json.loads(project.read('build/ExampleJob/deps.json'))['local']['image_id']
    assert remote_docker.api.inspect_image(deps)['Id'] == deps  # the dependency image itself went there
    project.edit('jobs/example_job.py', "log('SUCCESS with '", "log('EDITED with '")
    again = project.doit('run_remote', 'job=ExampleJob', 'transfer=ssh', 'registry=', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'INFO: EDITED with six' in again.stdout and 'transfer: 1 of ' in again.stdout
