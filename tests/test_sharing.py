"""A shared Docker host, as its users meet it: two copies of one project (same job names, same version)
running at the same moment, each must run its own code; and one project never sees, stops, collects or
cleans up another project's runs (tests/projects/basic, copied twice into temp folders)."""
import re
import subprocess

import pytest

from conftest import copy_project
from test_remote import remote_docker, remote_env  # noqa: F401  (fixtures)

MARKER_JOB = '''
"""Says which copy of the project and which edit it was built from."""
WHO = {who!r}


class Marker:
    def run(self):
        print('MARKER', WHO, flush=True)
        return WHO
'''


def two_copies(tmp_path):
    copies = []
    for name in ('clone_a', 'clone_b'):
        project = copy_project('basic', tmp_path / name)
        project.write('pipeline.toml', project.read('pipeline.toml') + '\n[jobs.Marker]\nfactory = "jobs.marker:Marker"\n')
        copies.append(project)
    return copies


def together(commands):
    """Start every (project, args) at once; wait for all; (returncode, stdout, stderr) each."""
    processes = [project.popen(*args) for project, args in commands]
    outputs = [p.communicate(timeout=600) for p in processes]
    return [(p.returncode, *output) for p, output in zip(processes, outputs)]


@pytest.mark.parametrize('step, transfer, rounds', [('run_remote', 'registry', 20), ('run_remote', 'ssh', 20),
                                                     ('run_local', 'registry', 5)])
def test_two_clones_at_once_each_run_their_own_code(tmp_path, remote_docker, step, transfer, rounds):  # noqa: F811
    a, b = two_copies(tmp_path)
    wrong = []
    for round_ in range(rounds):
        for project, who in ((a, f'a-{round_}'), (b, f'b-{round_}')):
            project.write('jobs/marker.py', MARKER_JOB.format(who=who))
        outcomes = together([(p, (step, 'job=Marker', f'transfer={transfer}')) for p in (a, b)])
        for (code, out, err), who in zip(outcomes, (f'a-{round_}', f'b-{round_}')):
            assert code == 0, (who, out, err)
            ran = re.findall(r'^MARKER (\S+)$', out, re.M)
            if ran != [who] or f"Result: '{who}'" not in out:
                wrong.append((who, ran, out[-500:], err[-500:]))
    assert wrong == []


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_one_project_never_acts_on_another_projects_runs(tmp_path, docker_client, remote_docker, where):  # noqa: F811
    client = docker_client if where == 'local' else remote_docker
    a, b = two_copies(tmp_path)
    at = f'where={where}'
    b_running = re.search(r'Started run (\S+)', b.doit(f'run_{where}', 'job=Counter', 'detach=1',  # 2 min at most:
                                                         'jobs.Counter.args=[240, 0.5]').stdout).group(1)  # a busy
    # machine may take longer than the usual 8 s for the commands below; this test stops it at its end
    b_ended = re.search(r'Started run (\S+)', b.doit(f'run_{where}', 'job=ResultJob', 'detach=1').stdout).group(1)

    def b_containers():
        return {c.labels['tg_pipeline.run_id']: c.status for c in client.containers.list(
            all=True, filters={'label': 'tg_pipeline.run_id'}, ignore_removed=True)
            if c.labels['tg_pipeline.run_id'] in (b_running, b_ended)}
    for _ in range(100):
        if b_containers().get(b_ended) == 'exited':
            break
        subprocess.run(['sleep', '0.2'])
    assert b_running not in a.doit('status', 'job=Counter', at).stdout
    assert 'has no running run' in a.doit('stop', 'job=Counter', at, check=False).stderr
    assert 'has no run' in a.doit('result', 'job=ResultJob', at, check=False).stderr
    assert 'has no run' in a.doit('logs', 'job=ResultJob', at, 'follow=1', check=False).stderr
    a.doit('cleanup', at, 'days=0')
    assert b_containers() == {b_running: 'running', b_ended: 'exited'}  # nothing of B's touched
    everyone = a.doit('status', 'job=Counter', at, 'all_projects=1').stdout
    assert b_running in everyone
    refused = a.doit('result', 'job=ResultJob', at, f'run_id={b_ended}', check=False)
    assert refused.returncode != 0 and 'only that project collects its result' in refused.stderr
    assert 'wrote 10 numbers' in a.doit('logs', 'job=ResultJob', at, f'run_id={b_ended}').stdout  # read only
    assert not a.path(f'build/ResultJob/runs/{where}/{b_ended}').exists()
    stopped = a.doit('stop', 'job=Counter', at, f'run_id={b_running}')
    assert 'it belongs to project' in stopped.stdout and 'who collects it' in stopped.stdout
    assert not a.path(f'build/Counter/runs/{where}/{b_running}.json').exists()
    assert "Result: {'sum': 45" in b.doit('result', 'job=ResultJob', at).stdout  # B collects its own
    b.doit('result', 'job=Counter', at, f'run_id={b_running}', check=False)
    assert b_containers() == {}


def test_cleanup_keeps_the_remote_image_count_bounded_over_many_edits(tmp_path, remote_docker):  # noqa: F811
    from tg_pipeline import config
    project, other = two_copies(tmp_path)
    other.write('jobs/marker.py', MARKER_JOB.format(who='other'))
    other.doit('run_remote', 'job=Marker')  # another project's image on the same host: never touched
    mine = config.load(project.path('pipeline.toml')).project
    theirs = config.load(other.path('pipeline.toml')).project

    def images(project_id):
        return remote_docker.images.list(filters={'label': f'tg_pipeline.project={project_id}'})
    for round_ in range(20):
        project.write('jobs/marker.py', MARKER_JOB.format(who=f'edit-{round_}'))
        assert f"Result: 'edit-{round_}'" in project.doit('run_remote', 'job=Marker').stdout
        if round_ % 5 == 4:
            project.doit('cleanup', 'where=remote', 'keep=2')
            assert len(images(mine)) <= 2
    assert len(images(theirs)) == 1
    assert f"Result: 'edit-19'" in project.doit('run_remote', 'job=Marker').stdout  # the newest still runs as is
