"""build_on = "remote" on a bare box (issue 22): a base image the remote lacks is sent from here, and a failed build
there is said once, naming the remote, leaving none of its images behind. The basic fixture project; the base image
is the stand-in tagged under a name of this test's own, removed afterwards (others' runs use the stand-in)."""
import re
import uuid

import docker
import pytest

pytestmark = pytest.mark.remote


@pytest.fixture
def own_base(docker_client, remote_docker):
    """The stand-in base image under a name only this test uses; the name goes from both engines afterwards (the
    image itself stays where another name holds it)."""
    from tg_pipeline.config.identity import default_base_image
    import os
    stand_in = os.environ.get('TG_PIPELINE_BASE_IMAGE') or default_base_image()
    name = f'tgbare-base-{uuid.uuid4().hex[:8]}:test'
    docker_client.images.get(stand_in).tag(*name.split(':'))
    yield name
    for client in (remote_docker, docker_client):
        try:
            client.images.remove(name)
        except docker.errors.APIError:
            pass


@pytest.fixture
def bare(project, docker_client, remote_docker):
    yield project
    import io
    from tg_pipeline.console import Console
    from tg_pipeline.image.housekeeping import prune_job_images
    for client in (docker_client, remote_docker):
        prune_job_images(client, project.id, keep=0, console=Console(out=io.StringIO()))


def test_a_base_image_the_remote_lacks_is_sent_from_here(bare, own_base, remote_docker, target):
    with pytest.raises(docker.errors.ImageNotFound):
        remote_docker.images.get(own_base)
    ran = bare.doit('run_remote', 'job=ExampleJob', 'build_on=remote', f'base_image={own_base}')
    said = ran.stdout + ran.stderr
    assert f'lacks the base image {own_base}: sending it from here' in said
    assert 'SUCCESS' in ran.stdout
    assert remote_docker.images.get(own_base).id  # there now, under its name


def test_a_failed_build_on_the_remote_is_said_once_and_leaves_no_image(bare, remote_docker, target):
    missing = f'tg-pipeline-no-such-package-{uuid.uuid4().hex[:8]}'  # a requirements.txt no engine has seen
    bare.edit('pipeline.toml', 'source_roots = ["jobs"]', f'source_roots = ["jobs"]\ndependencies = ["{missing}==1.0"]')
    failed = bare.doit('run_remote', 'job=ExampleJob', 'build_on=remote', check=False)
    assert failed.returncode != 0
    host = target.login().where
    said = failed.stdout + failed.stderr
    assert said.count('--- build log of ') == 1 and f'(built on remote {host}) ---' in said, said
    assert re.search(rf'^ERROR: pip cannot install the dependencies of \S+ \(on remote {re.escape(host)}\): .*'
                     rf'{missing}==1\.0', failed.stderr, re.M), failed.stderr
    assert failed.stderr.count('ERROR: ') == 1 and 'last output' not in failed.stderr
    assert 'command: docker build' not in failed.stderr  # no path of this machine for a build over there
    assert '\x1b[' not in said and 'Traceback' not in said
    log = said[said.index('--- build log of '):said.index('--- end of build log ---')]
    made = [image for step, image in re.findall(r'^Step \d+/\d+ : (\S+).*?^ ---> ([0-9a-f]{12})$', log, re.M | re.S)
            if step != 'FROM']  # the steps' own images: COPY requirements.txt (new), not the base image
    assert made, log
    for image in made:
        with pytest.raises(docker.errors.ImageNotFound):
            remote_docker.images.get(image)
