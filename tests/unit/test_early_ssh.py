"""The SSH login to [remote] starts while the build steps run (early_ssh.connect_early); open_host takes it, or raises
its error as if it had connected itself; a doit command that only names run_remote starts none (no SSH here)."""
import threading
import types

import pytest

from tg_pipeline.ssh import early as early_ssh, connection as ssh, transport
from tg_pipeline.hosts import host as hosts
from tg_pipeline.config.schema import RemoteSettings
from tg_pipeline.errors import RemoteError
from tg_pipeline.workflow.main import runs_remote


class FakeRemote:
    made: list = []

    def __init__(self, target):
        FakeRemote.made.append((target, threading.current_thread().name))
        if target == 'refusing-host':
            raise RemoteError('the SSH login to refusing-host was refused', hint='ssh refusing-host')
        self.docker, self.connection, self.closed = 'engine', 'connection', False

    def close(self):
        self.closed = True


@pytest.fixture
def fake_ssh(monkeypatch):
    FakeRemote.made = []
    monkeypatch.setattr(transport, 'open_remote', FakeRemote)
    monkeypatch.setattr(ssh.RemoteTarget, 'from_config', staticmethod(lambda remote, project='': remote.host))
    early_ssh._EARLY.clear()
    yield FakeRemote.made
    early_ssh._EARLY.clear()


def config(host):
    return types.SimpleNamespace(remote=RemoteSettings(host=host))


def test_open_host_takes_the_login_started_early(fake_ssh):
    early_ssh.connect_early(config('gpu-box'))
    early_ssh.connect_early(config('gpu-box'))  # once per host
    remote = hosts._remote(config('gpu-box'))
    assert fake_ssh == [('gpu-box', 'tg-pipeline-early-ssh')] and remote.docker == 'engine'
    hosts._remote(config('gpu-box'))  # the early one is taken once; the next login is made here
    assert fake_ssh[1] == ('gpu-box', 'MainThread')


def test_an_early_login_error_is_raised_where_the_host_is_opened(fake_ssh):
    early_ssh.connect_early(config('refusing-host'))
    with pytest.raises(RemoteError) as info:
        hosts._remote(config('refusing-host'))
    assert info.value.message == 'the SSH login to refusing-host was refused'


def test_a_login_nobody_took_is_closed_at_exit(fake_ssh):
    early_ssh.connect_early(config('gpu-box'))
    thread, box = early_ssh._EARLY[RemoteSettings(host='gpu-box')]
    thread.join()
    early_ssh.close_untaken()
    assert box['remote'].closed and early_ssh._EARLY == {}


@pytest.mark.parametrize('argv, expected', [
    (['run_remote', 'job=Train'], True), (['run', 'run_remote:Train', '-v', '2'], True),
    (['build_image', 'run_remote:Train'], True), (['run_local', 'job=Train'], False),
    (['help', 'run_remote'], False), (['info', 'run_remote:Train'], False), (['list'], False), ([], False),
])
def test_only_a_command_that_runs_run_remote_logs_in_early(argv, expected):
    assert runs_remote(argv) is expected


@pytest.mark.parametrize('argv, transfer, expected', [
    (['run_remote', 'job=Train'], 'ssh', False), (['run', 'run_remote:Train'], 'ssh', False),
    (['run_remote', 'job=Train'], 'registry', True), (['run_remote', 'run_local', 'job=Train'], 'ssh', True),
    (['build_image', 'run_remote:Train'], 'ssh', True), (['run_local', 'job=Train'], 'ssh', True), ([], 'ssh', True),
    (['info', 'run_remote:Train'], 'ssh', True),
])
def test_only_a_registry_free_remote_run_alone_skips_loading_the_image_here(argv, transfer, expected):
    from tg_pipeline.image.delivery import Delivery
    from tg_pipeline.workflow.params import run_steps
    from tg_pipeline.workflow.tasks import STEPS
    delivery = Delivery('Train', 'train:0.1', 'local', transfer, '')
    assert delivery.loads_here(run_steps(argv, STEPS)) is expected


def test_the_login_starts_before_the_docker_sdk_is_imported():
    """dodo.py reads the configuration and starts the login: neither needs docker (~50 ms to import), which the
    main thread imports while the login goes on."""
    import subprocess
    import sys
    probe = ('import sys, tg_pipeline.tasks, tg_pipeline.ssh.early; '
             'print(sorted(m for m in ("docker", "paramiko", "fabric") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'
