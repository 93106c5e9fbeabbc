"""What ran, against the real engines, the test remote and the swarm: two remote runs with an edit, a memory change
and an added dependency between them differ by exactly those three; a re-run of the first, after the edit, prints
the first run's output; a git work tree with an uncommitted change keeps its patch; a project that is no git tree
works; a pruned dependency image is built again from the kept requirements; a swarm run and a notebook's run keep
their records. (The same commands on attached runs, and the parts one by one: tests/unit/test_what_ran.py.)"""
import os
import subprocess

import pytest

from tg_pipeline.provenance import record as records
from tg_pipeline.provenance.store import Store

from unit.test_what_ran import git_project

SIX = 'six==1.16.0'


def kept(project, where: str) -> list[tuple]:
    return records.every(project.path('build'), where)


def remote_gpus(project) -> list[str]:
    """``INDEX: NAME`` of each GPU ``nvidia-smi`` lists on the project's remote host (none: [])."""
    from tg_pipeline import config
    host = config.load(project.path('pipeline.toml'), environ={}).remote.host
    done = subprocess.run(['ssh', '-o', 'BatchMode=yes', host, 'nvidia-smi --query-gpu=index,name --format=csv,noheader'],
                          capture_output=True, text=True, timeout=60)
    return [line.replace(', ', ': ', 1) for line in done.stdout.splitlines()] if done.returncode == 0 else []


def section(diff: str, title: str) -> list[str]:
    """The lines of one section of `doit diff`'s output (its heading first)."""
    lines = diff.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'## {title}:'))
    end = next((i for i, line in enumerate(lines[start + 1:], start + 1) if line.startswith('## ')), len(lines))
    return lines[start:end]


@pytest.mark.remote
@pytest.mark.slow
def test_an_edit_a_memory_change_and_a_dependency_are_what_differs_and_rerun_runs_the_first_again(project,
                                                                                                    remote_docker):
    commit = git_project(project)
    project.doit('run_remote', 'job=ExampleJob')
    project.edit('jobs/example_job.py', "log('SUCCESS')", "log('SUCCESS, edited')")  # uncommitted
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', f'source_roots = ["jobs"]\ndependencies = ["{SIX}"]')
    edited = project.doit('run_remote', 'job=ExampleJob', 'memory=1')
    assert 'INFO: SUCCESS, edited' in edited.stdout
    (_, first), (path, second) = kept(project, 'remote')

    diff = project.doit('diff', f'run_a={first["run_id"]}', f'run_b={second["run_id"]}', check=False)
    assert diff.returncode == 1, diff.stderr
    code = section(diff.stdout, 'code')
    assert [line for line in code if line.startswith(('---', '+++'))] == \
        ['--- a/jobs/example_job.py', '+++ b/jobs/example_job.py']
    assert [line for line in code[1:] if line[:1] in '+-' and line[:3] not in ('---', '+++')] == \
        ["-        log('SUCCESS')", "+        log('SUCCESS, edited')"]
    assert code[-1] == 'also differs, made by tg_pipeline from the settings and its own version: PKG-INFO, ' \
                       'pyproject.toml'
    assert section(diff.stdout, 'configuration')[1:] == [
        f'jobs.ExampleJob.dependencies: [] (default) -> ["{SIX}"] (pipeline.toml:4) (also package.dependencies)',
        'jobs.ExampleJob.memory_gb: 0.5 (pipeline.toml:11) -> 1.0 (command line) (also run.memory_gb)']
    assert section(diff.stdout, 'dependencies')[1:] == [f'+ {SIX}']
    assert section(diff.stdout, 'base image')[0].startswith('## base image: the same: ')
    assert section(diff.stdout, 'host')[0].startswith('## host: the same: remote ')
    [gpus] = [line for line in project.doit('show', f'run_id={second["run_id"]}').stdout.splitlines()
              if line.startswith('gpus      ')]  # (not the configuration's gpus = ...)
    found = remote_gpus(project)  # the host's GPUs, as its nvidia-smi lists them, are in the record
    assert all(f'{gpu} (driver ' in gpus for gpu in found) if found else 'none found' in gpus
    assert gpus.endswith('given to the run: none')

    # the uncommitted edit: kept as a patch, and the run marked dirty
    assert second['git']['commit'] == commit and second['git']['changed'] == ['jobs/example_job.py']
    patch = Store(project.path('build')).read('patch', second['git']['patch']).decode()
    assert "+        log('SUCCESS, edited')" in patch
    assert first['git']['dirty'] is False and first['git']['patch'] is None
    show = project.doit('show', f'run_id={second["run_id"]}').stdout
    assert 'dirty under the source roots (1 file(s) changed: jobs/example_job.py)' in show
    assert f'+ {SIX}' not in show and SIX in show  # the dependency set inside the image
    runs = project.doit('runs', 'where=remote').stdout.splitlines()
    assert runs[-1].split()[4] == commit[:8] + '*' and runs[-2].split()[4] == commit[:8]

    again = project.doit('rerun', f'run_id={first["run_id"]}')
    assert 'INFO: SUCCESS\n' in again.stdout and 'SUCCESS, edited' not in again.stdout
    rerun = kept(project, 'remote')[-1][1]
    assert rerun['repeats'] == first['run_id'] and rerun['code'] == first['code']
    same = project.doit('diff', f'run_a={first["run_id"]}', f'run_b={rerun["run_id"]}', check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    headings = [line for line in same.stdout.splitlines() if line.startswith('## ')]
    assert len(headings) == 5 and all(': the same' in line for line in headings), same.stdout


def test_a_project_that_is_no_git_tree_keeps_one_copy_of_the_same_code(project, docker_client):
    for _ in range(2):
        result = project.doit('run_local', 'job=ExampleJob')
        assert 'git' not in result.stderr.lower()
    store = Store(project.path('build'))
    (_, a), (_, b) = kept(project, 'local')
    assert a['git'] is None and a['code'] == b['code'] and a['image'] == b['image']
    assert [kind for kind, _, _ in store.objects()].count('sdist') == 1
    project.edit('jobs/example_job.py', "log('SUCCESS')", "log('SUCCESS again')")
    project.doit('run_local', 'job=ExampleJob')
    assert [kind for kind, _, _ in store.objects()].count('sdist') == 2
    assert 'git       not a git work tree' in project.doit('show', f'run_id={a["run_id"]}').stdout

    project.doit('clean', 'run_local:ExampleJob')  # the runs go: their kept sources with them at the next cleanup
    swept = project.doit('cleanup')
    assert 'that none of the 0 kept run(s) references removed' in swept.stdout
    assert [kind for kind, _, _ in store.objects()] == ['deps']  # the set of the dependency image in use stays


def test_rerun_builds_a_pruned_dependency_image_again_from_the_kept_requirements(project, docker_client):
    git_project(project)
    project.doit('run_local', 'job=ExampleJob')
    (_, first), = kept(project, 'local')
    for image in (first['image']['id'], first['dependencies']['image_id']):
        docker_client.images.remove(image, force=True)  # this test's own images, by id
    project.edit('jobs/example_job.py', "log('SUCCESS')", "log('SUCCESS, edited')")
    again = project.doit('rerun', f'run_id={first["run_id"]}')
    assert 'INFO: SUCCESS\n' in again.stdout and 'SUCCESS, edited' not in again.stdout
    rerun = kept(project, 'local')[-1][1]
    assert rerun['repeats'] == first['run_id']
    assert rerun['dependencies']['image_id'] != first['dependencies']['image_id']  # built again
    diff = project.doit('diff', f'run_a={first["run_id"]}', f'run_b={rerun["run_id"]}', check=False)
    assert '## code: the same' in diff.stdout and '## dependencies: the same' in diff.stdout  # pinned: same set


@pytest.mark.remote
def test_a_swarm_run_keeps_what_ran_of_every_variant(project, swarm):
    project.doit('run_swarm', 'job=Sweep')
    (path, record), = kept(project, 'swarm')
    assert record['variants'] == ['rate=1,width=10', 'rate=1,width=20', 'rate=2,width=10', 'rate=2,width=20']
    assert set(record['code']['payload']) == {'job', 'variants'}
    assert [n['role'] for n in record['host']['nodes']].count('manager') >= 1
    line = project.doit('runs', 'where=swarm').stdout.splitlines()[-1]
    assert line.split()[5] == '4/4' and line.endswith('4/4 variants succeeded')


NOTEBOOK_CELLS = [
    '''
class NotebookJob:
    def __init__(self, n):
        self.n = n

    def run(self):
        return self.n * 2
''',
    '''
from tg_pipeline import Packaging, Containering, SSHDockerOptions, SSHDockerConfig, SSHLocalExecutor
packaging = Packaging('notebookprov', '0.0.1', dict(job=NotebookJob(21)))
containering = Containering.from_packaging(packaging)
containering.silent = True
executor = SSHLocalExecutor(SSHDockerConfig(packaging, containering, SSHDockerOptions([]), None, None))
print('RESULT', executor.execute())
print('SAME RECORD', executor.last.provenance['run_id'] == executor.provenance['run_id'])
print('CELLS', executor.provenance['code']['cells'])
''',
]


def test_a_notebook_run_keeps_the_cells_that_defined_the_job(tmp_path, docker_client, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from conftest import REPO
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    NotebookClient(notebook, timeout=600, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
    output = ''.join(o.get('text', '') for o in notebook.cells[1].outputs)
    assert 'RESULT 42' in output and 'SAME RECORD True' in output
    cells = output.split('CELLS ')[1].split()[0]
    kept_cells = Store(tmp_path / 'build').read('cells', cells).decode()
    assert NOTEBOOK_CELLS[0].strip() in kept_cells
    (_, record), = records.every(tmp_path / 'build', 'local')
    assert record['command'].startswith('Python API (') and record['ended']['result'] == '42'


def test_runs_started_together_keep_their_records_and_one_copy_of_their_code(project, docker_client):
    project.doit('build_image', 'job=ExampleJob')
    processes = [project.popen('run_local', 'job=ExampleJob') for _ in range(3)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    runs = kept(project, 'local')
    assert len(runs) == 3 and len({r['run_id'] for _, r in runs}) == 3
    assert all(r['ended']['exit_code'] == 0 for _, r in runs)
    store = Store(project.path('build'))
    assert [kind for kind, _, _ in store.objects()].count('sdist') == 1
    assert all(store.has('sdist', r['code']['sdist']) and store.has('config', r['config']) for _, r in runs)
