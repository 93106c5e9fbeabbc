"""Stress: 50 mixed runs (success, failure, Ctrl-C, OOM) on the local engine and on the remote,
through the library functions the doit tasks call, then not one container left behind."""
import dataclasses
import os
import signal
import threading


from tg_pipeline import config as config_module
from tg_pipeline.console import Console
from tg_pipeline.workflow.context import Context
from tg_pipeline.workflow.run_steps import run_spec
from tg_pipeline.errors import JobFailed
from tg_pipeline.image.registry import pull
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs.lifecycle import run_container
from tg_pipeline.ssh.connection import Remote, RemoteTarget


KINDS = {'ResultJob': 'success', 'FailingJob': 'failure', 'Counter': 'ctrl-c', 'MemoryHog': 'oom'}
RUNS = 50


def interrupted(call, after=1.5):
    """Run ``call`` and deliver a real SIGINT to this process ``after`` seconds into it."""
    timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        call()
    except KeyboardInterrupt:
        return True
    finally:
        timer.join()
    return False


def test_fifty_mixed_runs_leave_no_orphans(project, docker_client, remote_docker, tmp_path):  # noqa: F811
    for job in KINDS:
        project.doit('push', f'job={job}')
    ctx = Context(config_module.load(project.path('pipeline.toml')))
    local_specs = {job: run_spec(ctx, job) for job in KINDS}
    outcomes = {'local': [], 'remote': []}
    with Remote(RemoteTarget.from_config(ctx.config.remote)) as remote:
        remote_specs = {}
        for job, spec in local_specs.items():
            reference = ctx.delivery(job).registry_reference()
            pull(remote.docker, reference, spec.image_id, console=Console(quiet=True))
            remote_specs[job] = dataclasses.replace(spec, reference=reference)
        engines = {'local': (docker_client, local_specs), 'remote': (remote.docker, remote_specs)}
        for i in range(RUNS):
            where = 'local' if i % 2 == 0 else 'remote'
            job = list(KINDS)[(i // 2) % len(KINDS)]
            client, specs = engines[where]
            run = lambda: run_container(client, specs[job], where=where, paths=RunPaths(tmp_path / where),  # noqa: E731
                                        console=Console(quiet=True, err=open(os.devnull, 'w')))
            if KINDS[job] == 'ctrl-c':
                outcomes[where].append(('ctrl-c', interrupted(run)))
                continue
            try:
                result = run()
                outcomes[where].append((KINDS[job], result.exit_code == 0 and result.value is not None))
            except JobFailed as e:
                expected = 'exceeding its memory limit' in e.message if KINDS[job] == 'oom' \
                    else 'boom from the fixture' in (e.remote_traceback or '')
                outcomes[where].append((KINDS[job], expected))
    for where, results in outcomes.items():
        assert all(ok for _, ok in results), (where, results)
        assert {kind for kind, _ in results} == set(KINDS.values())
    assert len(outcomes['local']) + len(outcomes['remote']) == RUNS
    for client in (docker_client, remote_docker):
        left = [c.name for job in KINDS for c in client.containers.list(
            all=True, filters={'label': project.labels(job)})]
        assert left == []
