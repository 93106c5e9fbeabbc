"""build_on = "remote": the remote engine builds the dependency image from requirements.txt, and the code layer is
appended there; this machine builds nothing and only the inputs cross the link."""
import json
import uuid

import pytest

from target import TARGET

pytestmark = pytest.mark.remote


def remote_entry(project) -> tuple[str, dict]:
    entries = {k: v for k, v in json.loads(project.read('build/ExampleJob/deps.json')).items() if k != 'local'}
    assert len(entries) == 1
    return next(iter(entries.items()))


def test_build_on_remote_builds_the_dependencies_there_and_appends_code_edits(project, remote_docker, docker_client):
    marker = uuid.uuid4().int % 10**9  # a requirements.txt no engine has built: the dependency build surely runs
    project.edit('pipeline.toml', 'source_roots = ["jobs"]',
                 f'source_roots = ["jobs"]\ndependencies = ["six!=0.0.{marker}"]')
    project.edit('jobs/example_job.py', "log('SUCCESS')", "import six\n        log('SUCCESS six ' + six.__name__)")
    result = project.doit('run_remote', 'job=ExampleJob', 'build_on=remote', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'INFO: SUCCESS six six' in result.stdout
    assert 'build_image:ExampleJob' not in result.stdout and 'push:ExampleJob' not in result.stdout
    engine, deps = remote_entry(project)
    assert engine.startswith('remote ') and 'local' not in json.loads(project.read('build/ExampleJob/deps.json'))
    assert remote_docker.api.inspect_image(deps['image_id'])['Config']['Labels']['tg_pipeline.deps'] == 'ExampleJob'
    assert not docker_client.images.list(filters={'label': f'tg_pipeline.project={project.id}'})  # nothing here

    project.edit('jobs/example_job.py', "log('SUCCESS six '", "log('EDITED six '")
    again = project.doit('run_remote', 'job=ExampleJob', 'build_on=remote', env={'EXAMPLE_VARIABLE': 'x'})
    assert 'INFO: EDITED six six' in again.stdout and 'Step 1/' not in again.stdout
    assert remote_entry(project) == (engine, deps)  # the dependency image was not built again
    jobs = remote_docker.images.list(filters={'label': [f'tg_pipeline.project={project.id}', 'tg_pipeline.job']})
    assert len(jobs) == 2 and {i.attrs['Config']['Image'] for i in jobs} == {deps['image_id']}


def test_build_on_remote_pip_failure_is_reported_from_the_remote(project, remote_docker):
    project.edit('pipeline.toml', 'source_roots = ["jobs"]',
                 'source_roots = ["jobs"]\ndependencies = ["tg-pipeline-no-such-package-xyz==1.0"]')
    result = project.doit('run_remote', 'job=ExampleJob', 'build_on=remote', env={'EXAMPLE_VARIABLE': 'x'},
                          check=False)
    assert result.returncode != 0
    assert 'ERROR: pip cannot install the dependencies' in result.stderr + result.stdout
    assert 'tg-pipeline-no-such-package-xyz' in result.stderr + result.stdout
    assert 'Traceback' not in result.stderr


def test_build_on_remote_for_a_swarm_run_pushes_from_the_remote(project, remote_docker, docker_client, swarm):  # noqa: F811
    result = project.doit('run_swarm', 'job=Sweep', 'build_on=remote')
    assert "variant 3 (rate=2,width=20): complete, exit 0, result {'rate': 2, 'width': 20, 'score': 40}" \
        in result.stdout
    assert 'build_image:Sweep' not in result.stdout and 'push:Sweep' not in result.stdout
    here = docker_client.images.list(filters={'label': f'tg_pipeline.project={project.id}'})
    assert all(i.attrs['RepoDigests'] and 'tg_pipeline.deps' not in i.labels for i in here)  # pulled by a task only
    engine, deps = next((k, v) for k, v in json.loads(project.read('build/Sweep/deps.json')).items())
    assert engine.startswith('remote ') and remote_docker.api.inspect_image(deps['image_id'])
    image_id = next(i.id for i in remote_docker.images.list(filters={'label': f'tg_pipeline.project={project.id}'})
                    if i.labels.get('tg_pipeline.job') == 'Sweep')
    pushed = remote_docker.api.inspect_image(image_id)['RepoDigests']
    assert any(d.startswith(f'{TARGET.registry}/tgtest-sweep@sha256:') for d in pushed)
