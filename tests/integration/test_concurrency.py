"""Many doit processes in one project folder at once: the state survives, no step runs twice at once.

The first tests drive small dodo files of their own (no Docker); the last one runs
three pipelines at once on the basic fixture project, round after round. "At once" is made, never waited
for: the process that holds a lock holds it until the others say they wait for it.
"""
import json
import secrets
import subprocess
import sys
import textwrap

import pytest

from conftest import Project, ran, wait_for
from unit.test_concurrency import GUARDED_DODO, dodo_project

GROUPS, TASKS_PER_GROUP = 3, 40

SHARED_STATE_DODO = f'''
import os, time
from tg_pipeline.workflow.locks import doit_config
DOIT_CONFIG = {{**doit_config('build'), 'verbosity': 0}}

def copy(src, dst):
    time.sleep(0.003)
    data = open(src).read()
    with open(dst + '.tmp' + str(os.getpid()), 'w') as file:
        file.write(data)
    os.replace(dst + '.tmp' + str(os.getpid()), dst)

def task_step():
    for name in (f'{{g}}-{{i}}' for g in range({GROUPS}) for i in range({TASKS_PER_GROUP})):
        yield dict(name=name, actions=[(copy, [f'in/{{name}}', f'out/{{name}}'])], file_dep=[f'in/{{name}}'],
                   targets=[f'out/{{name}}'])
'''


@pytest.mark.slow
def test_job_lock_excludes_processes_and_names_the_holder(tmp_path):
    lock_path = tmp_path / 'build' / 'J' / '.lock'
    worker = textwrap.dedent(f'''
        import os, sys, time
        from tg_pipeline.workflow.locks import JobLock
        for _ in range(5):
            with JobLock({str(lock_path)!r}, 'J'):
                with open({str(tmp_path / 'log')!r}, 'a') as file:
                    file.write(f'in {{os.getpid()}}\\n')
                time.sleep(0.02)
                with open({str(tmp_path / 'log')!r}, 'a') as file:
                    file.write(f'out {{os.getpid()}}\\n')
    ''')
    env = Project(tmp_path).env()
    from tg_pipeline.workflow.locks import JobLock
    stderr_files, workers = [tmp_path / f'worker_{i}.err' for i in range(4)], []
    with JobLock(lock_path, 'J'):  # every worker starts by waiting for this process: held until all say so
        for path in stderr_files:
            with open(path, 'w') as stderr:
                workers.append(subprocess.Popen([sys.executable, '-c', worker], env=env, stderr=stderr, text=True))
        wait_for(lambda: all('waiting for another' in p.read_text() or w.poll() is not None
                             for p, w in zip(stderr_files, workers)), what='every worker to wait for the lock')
    for w in workers:
        w.wait(timeout=60)
    errors = [path.read_text() for path in stderr_files]
    assert [w.returncode for w in workers] == [0] * 4, errors
    import os
    assert all(f'waiting for another doit process building J (pid {os.getpid()})' in e for e in errors), errors
    lines = (tmp_path / 'log').read_text().splitlines()
    assert len(lines) == 40
    for i in range(0, 40, 2):  # in/out pairs of one process, never interleaved
        assert lines[i].split()[0] == 'in' and lines[i + 1] == 'out ' + lines[i].split()[1], lines[i:i + 2]


@pytest.mark.slow
def test_state_survives_doit_processes_at_once(tmp_path):
    project = dodo_project(tmp_path, SHARED_STATE_DODO)
    (tmp_path / 'out').mkdir()
    names = [f'{g}-{i}' for g in range(GROUPS) for i in range(TASKS_PER_GROUP)]
    for round_ in range(2):  # on doit's dbm or json backend the first round already corrupts or loses state
        for name in names:
            project.write(f'in/{name}', f'{name} round {round_}')
        processes = [project.popen(f'step:{p % GROUPS}-*') for p in range(6)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
        assert [code for code, _, _ in results] == [0] * 6, results
    again = project.doit('step')
    assert [ran(again.stdout, f'step:{name}') for name in names] == [False] * len(names)  # nothing lost


def copies_at_once(project, count=3) -> list[tuple[int, str, str]]:
    """``count`` doit processes of ``copy`` started together; the one that takes the lock copies (GUARDED_DODO's
    held()) once all the others wait for it, as their stderr says. (exit code, stdout, stderr) of each."""
    project.path('release').unlink(missing_ok=True)
    stderr_files, processes = [project.path(f'copy_{i}.err') for i in range(count)], []
    try:
        for path in stderr_files:
            with open(path, 'w') as stderr:
                processes.append(subprocess.Popen([sys.executable, '-m', 'doit', 'copy'], cwd=project.root,
                                                  env=project.env(), stdout=subprocess.PIPE, stderr=stderr, text=True))
        wait_for(lambda: sum('waiting for another doit process' in p.read_text() for p in stderr_files) >= count - 1
                 or any(p.poll() is not None for p in processes), what=f'{count - 1} processes to wait for the lock')
    finally:
        project.write('release', '')
    outputs = [p.communicate(timeout=60)[0] for p in processes]
    return [(p.returncode, out, path.read_text()) for p, out, path in zip(processes, outputs, stderr_files)]


@pytest.mark.slow
def test_guarded_step_runs_once_across_processes_at_once(tmp_path):
    project = dodo_project(tmp_path, GUARDED_DODO)
    project.write('in.txt', 'one')
    results = copies_at_once(project)
    assert [code for code, _, _ in results] == [0] * 3, results
    assert project.read('executions').splitlines()[0].startswith('start')
    assert len(project.read('executions').splitlines()) == 2  # one start, one end
    skipped = [err for _, _, err in results if 'copy:J: done meanwhile by another doit process' in err]
    assert len(skipped) == 2 and all('waiting for another doit process building J (pid ' in e for e in skipped)
    assert project.read('out.txt') == 'one'
    assert not ran(project.doit('copy').stdout, 'copy')  # the state holds for a later run

    project.doit('forget', 'copy')  # a forced run still runs: the stamp is not news to a later process
    assert ran(project.doit('copy').stdout, 'copy')
    project.doit('run', '-a', 'copy')
    assert len(project.read('executions').splitlines()) == 6

    project.write('in.txt', 'two')  # a changed input runs again, once
    assert [code for code, _, _ in copies_at_once(project)] == [0] * 3
    assert len(project.read('executions').splitlines()) == 8 and project.read('out.txt') == 'two'


# --- three pipelines at once on the real engine ------------------------------------------------------------
ROUNDS = 10
COMMANDS = (('run_local', 'job=ExampleJob'), ('run_local', 'job=ResultJob'), ('build_image', 'job=ExampleJob'))
JOBS = ('ExampleJob', 'ResultJob')
BUILD_STEPS = ('serialize', 'sdist', 'dockerfile', 'build_image')


def executions(results, task: str) -> int:
    """How often a step really ran: the reporter's line says it ran, less the times the lock found it done."""
    from tg_pipeline.workflow.reporter import ran_steps
    started = sum(task in ran_steps(out) for _, out, _ in results)
    skipped = sum(f'{task}: done meanwhile by another doit process' in err for _, _, err in results)
    return started - skipped


def remove_made(client, project, image_ids: set, prefix: str):
    for container in client.containers.list(all=True, sparse=True):
        if container.attrs.get('ImageID') in image_ids:
            container.remove(force=True)
    for tag in [t for image in client.images.list() for t in image.tags if t.startswith(prefix)]:
        client.images.remove(tag, noprune=True)
    for image_id in image_ids:  # our images only: their shared (cached) parents stay
        try:
            client.images.remove(image_id, noprune=True, force=True)
        except Exception:
            pass


@pytest.mark.docker
def test_three_doit_processes_at_once_build_each_step_once(project_factory, docker_client):
    project = project_factory('basic')
    prefix = f'tgtest-locks-{secrets.token_hex(3)}-'
    project.edit('pipeline.toml', 'image_prefix = "tgtest-"', f'image_prefix = "{prefix}"')
    image_ids = set()
    try:
        for round_ in range(ROUNDS):
            project.write('jobs/example_job.py', project.read('jobs/example_job.py') + f'# round {round_}\n')
            processes = [project.popen(*command) for command in COMMANDS]  # started together
            results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
            assert [code for code, _, _ in results] == [0, 0, 0], results
            for job in JOBS:
                image_ids.add(json.loads(project.read(f'build/{job}/image.json'))['image_id'])
                for step in BUILD_STEPS:
                    expected = 0 if step == 'dockerfile' and round_ else 1
                    assert executions(results, f'{step}:{job}') == expected, (round_, step, job, results)
        assert len(image_ids) == 2 * ROUNDS  # a new image per job per round: the steps really rebuilt
        project.doit('list', '--all')  # the state file still loads
        project.doit('info', 'build_image:ExampleJob')
        for job in JOBS:
            again = project.doit('build_image', f'job={job}')
            assert [ran(again.stdout, f'{step}:{job}') for step in BUILD_STEPS] == [False] * 4
    finally:
        remove_made(docker_client, project, image_ids, prefix)
