"""Run lifecycle on the real local engine and the simulated remote: results back, detach/status/logs/
stop/result, Ctrl-C, a dropped SSH connection, OOM, cleanup, and no container left behind."""
import os
import pwd
import re
import signal
import subprocess

import pytest

from conftest import need, wait_for  # noqa: F401

from .conftest import HOLD, release

JOBS = ('ResultJob', 'FailingJob', 'Counter', 'MemoryHog')


def ours(client, job, project=None):
    """The job's containers on that engine (of the test's project, when given: the engine is shared)."""
    labels = project.labels(job) if project else [f'tg_pipeline.job={job}']
    return client.containers.list(all=True, filters={'label': labels}, ignore_removed=True)


def run_id_of(output):
    return re.search(r'Started run (\S+)', output).group(1)


def engine(where, docker_client, remote_docker):  # noqa: F811
    return docker_client if where == 'local' else remote_docker


def running(client, job, project):
    return [c for c in ours(client, job, project) if c.status == 'running']


def streaming(project, where, container) -> bool:
    """Whether the attached doit process writes the run's output to its saved log already (it follows it)."""
    saved = project.path(f'build/{container.labels["tg_pipeline.job"]}/runs/{where}/'
                         f'{container.labels["tg_pipeline.run_id"]}.out')
    return saved.exists() and 'line 0\n' in saved.read_text()


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_return_value_and_output_folder_come_back(project, where, docker_client, remote_docker):  # noqa: F811
    result = project.doit(f'run_{where}', 'job=ResultJob')
    assert "Result: {'sum': 45, 'squares': [0, 1, 4, 9]}" in result.stdout
    run_dir = re.search(r'logs in (\S+)', result.stdout).group(1)
    assert run_dir.startswith(f'build/ResultJob/runs/{where}/')  # relative to the project, where doit runs
    numbers = (project.root / run_dir / 'output' / 'numbers.txt').read_text().split('\n')
    assert numbers == [str(i) for i in range(10)]
    assert ours(engine(where, docker_client, remote_docker), 'ResultJob', project) == []
    status = project.doit('status', 'job=ResultJob', f'where={where}')
    assert 'collected, exited 0' in status.stdout


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_detach_status_logs_result(project, where, docker_client, remote_docker):  # noqa: F811
    client = engine(where, docker_client, remote_docker)
    started = project.doit(f'run_{where}', 'job=Counter', 'detach=1', HOLD)
    run_id = run_id_of(started.stdout)
    assert 'line 0' not in started.stdout  # returned at once, the run goes on there
    status = project.doit('status', 'job=Counter', f'where={where}')
    assert re.search(rf'{run_id}\s+running', status.stdout), status.stdout
    early = project.doit('result', 'job=Counter', f'where={where}', check=False)
    assert early.returncode != 0
    assert f'ERROR: run {run_id} of job Counter is still running' in early.stderr
    assert f'follow=1' in early.stderr
    assert release(*ours(client, 'Counter', project)) == 1
    followed = project.doit('logs', 'job=Counter', f'where={where}', f'run_id={run_id}', 'follow=1')
    assert [f'line {i}' for i in range(16)] == re.findall(r'^line \d+$', followed.stdout, re.M)
    assert 'Result: 16' in followed.stdout
    assert ours(client, 'Counter', project) == []  # collected and removed once it ended
    result = project.doit('result', 'job=Counter', f'where={where}')
    assert 'Result: 16' in result.stdout
    status = project.doit('status', 'job=Counter', f'where={where}', f'run_id={run_id}')
    assert re.search(rf'{run_id}\s+collected, exited 0', status.stdout)


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_stop_a_detached_run(project, where, docker_client, remote_docker):  # noqa: F811
    client = engine(where, docker_client, remote_docker)
    run_id = run_id_of(project.doit(f'run_{where}', 'job=Counter', 'detach=1', HOLD).stdout)
    started = wait_for(lambda: running(client, 'Counter', project), what='the run to start')
    wait_for(lambda: b'line 0' in started[0].logs(), what='its first line')
    stopped = project.doit('stop', 'job=Counter', f'where={where}')
    assert f'Stopped run {run_id} of job Counter' in stopped.stdout
    assert ours(client, 'Counter', project) == []
    assert 'line 0' in project.path(f'build/Counter/runs/{where}/{run_id}.out').read_text()
    again = project.doit('stop', 'job=Counter', f'where={where}', check=False)
    assert 'ERROR: job Counter has no running run' in again.stderr


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_sigint_stops_the_container(project, where, docker_client, remote_docker):  # noqa: F811
    client = engine(where, docker_client, remote_docker)
    project.doit('build_image' if where == 'local' else 'push', 'job=Counter')
    process = project.popen(f'run_{where}', 'job=Counter', HOLD)
    started = wait_for(lambda: running(client, 'Counter', project), what='the container')
    wait_for(lambda: streaming(project, where, started[0]), what='doit to follow the run')
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert 'Interrupted: stopping container' in stderr
    assert 'Traceback' not in stderr
    assert ours(client, 'Counter', project) == []


def test_sigint_with_on_interrupt_detach_leaves_it_running(project, docker_client):
    project.doit('build_image', 'job=Counter')
    process = project.popen('run_local', 'job=Counter', 'on_interrupt=detach', HOLD)
    wait_for(lambda: running(docker_client, 'Counter', project), what='the container')
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    run_id = re.search(r"Interrupted: run (\S+) keeps running", stderr)
    assert run_id, (process.returncode, stdout, stderr)
    run_id = run_id.group(1)
    assert f'doit logs job=Counter where=local run_id={run_id} follow=1' in stderr
    assert [c.status for c in ours(docker_client, 'Counter', project)] == ['running']
    assert release(*ours(docker_client, 'Counter', project)) == 1
    followed = project.doit('logs', 'job=Counter', f'run_id={run_id}', 'follow=1')
    assert re.findall(r'^line \d+$', followed.stdout, re.M) == [f'line {i}' for i in range(16)]
    assert ours(docker_client, 'Counter', project) == []


@pytest.mark.parametrize('step, on_interrupt, left', [('start', 'detach', ['running']), ('start', 'stop', []),
                                                       ('create', 'detach', [])])
def test_ctrl_c_while_the_engine_makes_or_starts_the_job(project, docker_client, monkeypatch, step, on_interrupt,
                                                         left):
    """Ctrl-C can land after the engine made or started the container, before the SDK call returned."""
    import io
    import json

    from docker import APIClient

    from tg_pipeline.runs.model import LABEL, RunSpec
    from tg_pipeline.runs.lifecycle import run_container
    from tg_pipeline.console import Console

    project.doit('build_image', 'job=Counter')
    tag = json.loads(project.path('build/Counter/image.json').read_text())['tag']
    image = docker_client.images.get(tag).labels
    spec = RunSpec(image_id=tag, job=image[f'{LABEL}.job'], package=image[f'{LABEL}.package'],
                   version=image[f'{LABEL}.version'], module=image[f'{LABEL}.module'],
                   project=project.id)
    owner, step = APIClient, 'start' if step == 'start' else 'create_container'
    real = getattr(owner, step)

    def then_interrupt(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(owner, step, then_interrupt)
    err = io.StringIO()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_container(docker_client, spec, console=Console(quiet=True, err=err), on_interrupt=on_interrupt)
        assert [c.status for c in ours(docker_client, 'Counter', project)] == left
        if step == 'start':
            expected = 'keeps running in container' if left else 'Interrupted: stopping container'
            assert expected in err.getvalue()
    finally:
        for container in ours(docker_client, 'Counter', project):
            container.remove(force=True)


def connection_owner(project, process) -> int:
    """The process here that holds the project's SSH connection: the ssh program's shared master for this project
    (``ssh -O check`` on its control socket names it), or the doit process itself (paramiko)."""
    from tg_pipeline import config
    from tg_pipeline.ssh.openssh import OpenSSH
    from tg_pipeline.ssh.settings import RemoteTarget
    loaded = config.load(project.path('pipeline.toml'), environ={})
    target = RemoteTarget.from_config(loaded.remote, loaded.project)
    return OpenSSH(target, target.settings()).master_pid() or process.pid


def sshd_serving(project, process, target) -> list[int]:
    """The remote sshd processes of the project's one SSH connection (see :func:`connection_owner`), found by its
    port here, run as the remote user (the session's own process, not its privileged monitor): others' sessions
    with that sshd and that user are not ours to end. The remote's network namespace shares this machine's PID
    space."""
    login = target.login()
    host, port = login.hostname, login.port
    owner = connection_owner(project, process)
    here = subprocess.run(['ss', '-tnpH', 'state', 'established', 'dst', f'{host}:{port}'],
                          capture_output=True, text=True, check=True).stdout
    ports = [line.split()[2].rsplit(':', 1)[1] for line in here.splitlines() if f'pid={owner},' in line]
    assert len(ports) == 1, here
    there = subprocess.run(['nsenter', f'--net=/run/netns/{target.netns}', 'ss', '-tnpH', 'state',
                            'established', 'sport', '=', f':{port}', 'and', 'dport', '=', f':{ports[0]}'],
                           capture_output=True, text=True, check=True).stdout
    user = pwd.getpwnam(login.user).pw_uid
    pids = [int(pid) for pid in sorted(set(re.findall(r'pid=(\d+)', there))) if os.stat(f'/proc/{pid}').st_uid == user]
    assert pids, there
    return pids


def test_dropped_ssh_connection_leaves_the_job_running(project, target, remote_docker):  # noqa: F811
    need(None if target.netns else 'TG_TEST_REMOTE_NETNS is empty', "the test remote's sshd in a namespace of "
         'this machine (its processes ended from here)', 'scripts/setup_remote.sh')
    project.doit('push', 'job=Counter')
    process = project.popen('run_remote', 'job=Counter', HOLD)
    started = wait_for(lambda: running(remote_docker, 'Counter', project), what='the container')
    wait_for(lambda: streaming(project, 'remote', started[0]), what='doit to follow the run')
    # kill the remote sshd process serving this connection (only it): the client's transport dies mid-run
    for pid in sshd_serving(project, process, target):
        os.kill(pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert 'was lost during run' in stderr and 'the job keeps running there' in stderr
    assert 'Traceback' not in stderr
    run_id = re.search(r'was lost during run (\S+)', stderr).group(1)
    assert [c.status for c in ours(remote_docker, 'Counter', project)] == ['running']
    assert release(*ours(remote_docker, 'Counter', project)) == 1
    followed = project.doit('logs', 'job=Counter', 'where=remote', f'run_id={run_id}', 'follow=1')
    assert re.findall(r'^line \d+$', followed.stdout, re.M) == [f'line {i}' for i in range(16)]
    assert 'Result: 16' in followed.stdout
    assert ours(remote_docker, 'Counter', project) == []
    saved = project.path(f'build/Counter/runs/remote/{run_id}.out').read_text()
    assert 'line 15' in saved and 'line 0' in saved  # the saved log is whole, not the part before the drop


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_oom_kill_is_reported_with_the_limit(project, where, docker_client, remote_docker):  # noqa: F811
    result = project.doit(f'run_{where}', 'job=MemoryHog', check=False)
    assert result.returncode != 0
    assert 'ERROR: job MemoryHog was killed for exceeding its memory limit of 0.125 GB' in result.stderr
    assert 'TIP: raise memory_gb' in result.stderr
    assert 'Traceback' not in result.stderr
    assert ours(engine(where, docker_client, remote_docker), 'MemoryHog', project) == []
    status = project.doit('status', 'job=MemoryHog', f'where={where}')
    assert '(OOM killed)' in status.stdout


def test_cleanup_removes_ended_runs_only(project, docker_client):
    project.doit('run_local', 'job=ResultJob', 'detach=1')
    ended = wait_for(lambda: [c for c in ours(docker_client, 'ResultJob', project) if c.status == 'exited'], what='exit')
    running_id = run_id_of(project.doit('run_local', 'job=Counter', 'detach=1', HOLD).stdout)
    kept = project.doit('cleanup', 'days=1')
    assert '0 ended run(s) older than 1 day(s) removed' in kept.stdout
    assert len(ours(docker_client, 'ResultJob', project)) == 1
    cleaned = project.doit('cleanup', 'days=0')
    assert f'removed run {ended[0].labels["tg_pipeline.run_id"]} of job ResultJob' in cleaned.stdout
    assert ours(docker_client, 'ResultJob', project) == []
    assert [c.status for c in ours(docker_client, 'Counter', project)] == ['running']  # running runs are never touched
    result = project.doit('result', 'job=ResultJob')  # collected before it was removed
    assert "Result: {'sum': 45" in result.stdout
    project.doit('stop', 'job=Counter', f'run_id={running_id}')


def test_bad_lifecycle_input_is_named(project, docker_client):
    wrong = project.doit('status', 'job=Counter', 'where=moon', check=False)
    assert "ERROR: key 'where': where=moon is not local, remote or swarm" in wrong.stderr
    unknown = project.doit('logs', 'job=Counter', 'run_id=20990101-000000-abcdef', check=False)
    assert 'ERROR: no run 20990101-000000-abcdef of job Counter on local' in unknown.stderr
    days = project.doit('cleanup', 'days=soon', check=False)
    assert "ERROR: key 'days': days=soon is not a number" in days.stderr


def test_image_missing_on_the_remote_is_named(project, target):  # noqa: F811
    from tg_pipeline.errors import PipelineError
    from tg_pipeline.ssh.connection import Remote, RemoteTarget
    from tg_pipeline.runs.model import RunSpec
    from tg_pipeline.runs.lifecycle import run_container
    spec = RunSpec(image_id='tgtest-never-built:0.0.0', job='Ghost', package='ghost', version='0.0.0',
                   module='ghost__0_0_0')
    with Remote(RemoteTarget(target.remote)) as remote:
        with pytest.raises(PipelineError) as info:
            run_container(remote.docker, spec, where=f'remote {remote.name}')
        assert ours(remote.docker, 'Ghost') == []
    assert 'image tgtest-never-built:0.0.0 is not on the remote' in info.value.message
    assert info.value.hint
