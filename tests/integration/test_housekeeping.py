"""prune_job_images on the real engine, with tiny images built by the classic builder like job images."""
import io
import secrets
import tarfile

import docker.errors
import pytest

from tg_pipeline.image.housekeeping import created_key, prune_job_images

pytestmark = pytest.mark.docker

DOCKERFILE = '''FROM python:3.11-slim
COPY dep.txt /tg/dep.txt
RUN cp /tg/dep.txt /tg/installed.txt
LABEL tg_pipeline.project={project} tg_pipeline.job=Job
COPY code.txt /tg/code.txt
'''


def build(client, project: str, version: int, tag: str) -> tuple[str, list[str]]:
    """(image id, build log lines) of one "version" of the job: the same dependency step, new code."""
    files = {'Dockerfile': DOCKERFILE.format(project=project), 'dep.txt': f'dependencies of {project}\n',
             'code.txt': f'{project} version {version}\n'}
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode='w') as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    log, image_id = [], None
    for event in client.api.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                                  decode=True):
        assert 'error' not in event, event
        log.extend(line for line in event.get('stream', '').splitlines() if line.strip())
        image_id = (event.get('aux') or {}).get('ID', image_id)
    return image_id, log


def exists(client, image_id: str) -> bool:
    try:
        client.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def dependency_image(client, image_id: str) -> str:
    """The image of the RUN step (the dependency layer): parent of the LABEL step's image."""
    label_step = client.api.inspect_image(image_id)['Parent']
    return client.api.inspect_image(label_step)['Parent']


def used_cache(log: list[str], step: str) -> bool:
    index = next(i for i, line in enumerate(log) if line.startswith('Step ') and step in line)
    return log[index + 1].strip() == '---> Using cache'


def remove_all(client, projects, containers):
    for container in containers:
        container.remove(force=True)
    for project in projects:
        for image in client.images.list(filters={'label': f'tg_pipeline.project={project}'}):
            for reference in image.tags or [image.id]:
                client.api.remove_image(reference, force=True)  # with its own parents, up to the base image


def test_created_key_orders_docker_timestamps():
    assert created_key('2024-01-01T00:00:00.5Z') > created_key('2024-01-01T00:00:00.123456789Z')
    assert created_key('2024-01-01T00:00:01Z') > created_key('2024-01-01T00:00:00.999Z')


def test_prune_keeps_newest_used_and_other_projects(docker_client, capsys):
    client, name = docker_client, f'tgtest-hk-{secrets.token_hex(3)}'
    project_a, project_b = f'{name}-a', f'{name}-b'
    containers = []
    try:
        a = [build(client, project_a, v, f'{project_a}:latest')[0] for v in range(5)]
        client.api.tag(a[1], project_a, 'second-tag')  # an old version with two tags
        b = [build(client, project_b, v, f'{project_b}:latest')[0] for v in range(2)]
        dependency = dependency_image(client, a[4])
        assert all(dependency_image(client, i) == dependency for i in a)  # one cached dependency step
        containers.append(client.containers.create(a[0], command=['true'], name=f'{name}-used'))
        containers[0].start()
        containers[0].wait(timeout=60)
        assert client.containers.get(containers[0].id).status == 'exited'

        assert prune_job_images(client, project_a, keep=2, dry_run=True) == [a[2], a[1]]
        assert all(exists(client, i) for i in a)  # a dry run removes nothing
        assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ['would', 'would', 'project']

        removed = prune_job_images(client, project_a, keep=2)
        out = capsys.readouterr().out.splitlines()
        assert removed == [a[2], a[1]]
        assert [exists(client, i) for i in a] == [True, False, False, True, True]
        assert all(exists(client, i) for i in b)
        assert exists(client, dependency)
        assert [line.split()[0] for line in out] == ['removed', 'removed', 'project']
        assert f'{project_a}:second-tag' in out[1]
        assert out[2] == f'project {project_a}: removed 2 job image(s), kept 3 (the 2 newest per job; ' \
                         f'1 more used by containers)'

        image_id, log = build(client, project_a, 5, f'{project_a}:latest')
        assert used_cache(log, 'COPY dep.txt') and used_cache(log, 'RUN cp')
        assert dependency_image(client, image_id) == dependency
        assert prune_job_images(client, project_a, keep=2) == [a[3]]  # a[0] is still used

        b_dependency = dependency_image(client, b[1])
        assert sorted(prune_job_images(client, project_b, keep=0)) == sorted(b)
        assert not exists(client, b_dependency)  # a dependency layer no image builds on any more goes too
        assert exists(client, 'python:3.11-slim') and exists(client, dependency) and exists(client, image_id)
    finally:
        remove_all(client, [project_a, project_b], containers)
    assert client.images.list(all=True, filters={'label': f'tg_pipeline.project={project_a}'}) == []
    assert not exists(client, dependency)
