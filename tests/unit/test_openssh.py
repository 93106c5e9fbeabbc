"""The shared SSH connection's names and places (ssh/openssh.py), the choice of client (ssh/transport.py), and the
ssh program's words as one ERROR/TIP paragraph (ssh/errors.openssh_error); the Docker SDK over a socketpair channel
(compat.docker.docker_over_channels). No SSH server: see tests/integration/test_ssh.py for the real ones."""
import os
import shutil
import socket
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from tg_pipeline.compat.docker import docker_over_channels
from tg_pipeline.ssh import openssh, transport
from tg_pipeline.ssh.errors import openssh_error
from tg_pipeline.ssh.settings import RemoteTarget, SSHSettings

SETTINGS = SSHSettings(alias='gpu-box', hostname='10.0.0.7', port=2222, user='me', connect_timeout=5)


@pytest.fixture
def short_tmp():
    """A folder of a short path: a Unix socket's path holds 107 bytes, less than pytest's own temp folders
    may take (a worker's ``popen-gw1/`` and a long test name)."""
    folder = Path(tempfile.mkdtemp(prefix='tgssh-'))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_control_sockets_live_in_a_folder_only_the_user_reads(tmp_path, monkeypatch):
    runtime = tmp_path / 'run'
    runtime.mkdir(mode=0o755)
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(runtime))
    folder = openssh.control_dir()
    assert folder == str(runtime / 'tg_pipeline' / 'ssh')
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    os.chmod(folder, 0o755)  # loosened by someone: made private again
    assert stat.S_IMODE(os.stat(openssh.control_dir()).st_mode) == 0o700


def test_two_projects_users_or_hosts_never_share_a_socket():
    name = openssh.control_name(RemoteTarget('gpu-box', project='vision-1'), SETTINGS)
    assert name == openssh.control_name(RemoteTarget('gpu-box', project='vision-1'), SETTINGS)
    others = {openssh.control_name(RemoteTarget('gpu-box', project='nlp-2'), SETTINGS),
              openssh.control_name(RemoteTarget('gpu-box', project='vision-1'),
                                   SSHSettings(**{**SETTINGS.__dict__, 'user': 'you'})),
              openssh.control_name(RemoteTarget('gpu-box', project='vision-1'),
                                   SSHSettings(**{**SETTINGS.__dict__, 'port': 22}))}
    assert name not in others and len(others) == 3
    assert len(name) == 20 and 'gpu-box' not in name  # nothing to guess from in a listing


def test_a_user_s_own_control_master_is_used_as_it_is(short_tmp, monkeypatch):
    tmp_path = short_tmp
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(tmp_path))
    own = openssh.OpenSSH(RemoteTarget('gpu-box', project='p'), SETTINGS)
    assert own.own and any(o.startswith('ControlPath=' + str(tmp_path)) for o in own.command('true'))
    assert own.command('true')[-4:] == ['-T', 'gpu-box', '--', 'true']
    theirs = openssh.OpenSSH(RemoteTarget('gpu-box', project='p'),
                             SSHSettings(**{**SETTINGS.__dict__, 'control_master': 'auto'}))
    assert not theirs.own and not any('Control' in o for o in theirs.command('true')) and theirs.alive()


def test_the_client_is_chosen_here_and_said_by_doit_config(monkeypatch):
    monkeypatch.setattr(transport.shutil, 'which', lambda name: None)
    assert transport.client_of('auto') == 'paramiko' and transport.client_of('openssh') == 'openssh'
    remote = type('Remote', (), {'ssh_client': 'auto', 'control_persist': 300.0})()
    assert 'paramiko (chosen automatically: no ssh program here can share connections)' in transport.describe(remote)
    monkeypatch.setattr(transport.shutil, 'which', lambda name: '/usr/bin/ssh')
    assert transport.client_of('auto') == ('openssh' if os.name != 'nt' else 'paramiko')


@pytest.mark.parametrize('said, expected', [
    ('ssh: Could not resolve hostname gpu-box: Name or service not known', 'the host name 10.0.0.7 (alias gpu-box) '
                                                                            'does not resolve'),
    ('ssh: connect to host 10.0.0.7 port 2222: Connection refused', 'nothing accepts SSH connections on 10.0.0.7 '
                                                                     'port 2222'),
    ('Host key verification failed.', 'the host key of 10.0.0.7 (alias gpu-box) is unknown'),
    ('@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.', 'has CHANGED'),
    ('me@10.0.0.7: Permission denied (publickey).', 'SSH login as me to 10.0.0.7 (alias gpu-box) was refused'),
    ('ssh: connect to host 10.0.0.7 port 2222: Connection timed out', 'did not answer within 5 s'),
    ('Connection timed out during banner exchange', 'sent no SSH banner'),
    ('mux_client_request_session: session request failed: Session open refused by peer', 'MaxSessions'),
    ('something new', 'SSH to 10.0.0.7 port 2222 (alias gpu-box) failed: something new'),
])
def test_what_ssh_said_is_one_paragraph_with_a_command_to_paste(said, expected):
    text = openssh_error(said, SETTINGS).render()
    assert expected in text and text.count('ERROR: ') == 1 and text.count('\nTIP: ') == 1, text
    assert 'me@10.0.0.7:2222' not in text.split('\nTIP: ')[1]


def test_the_docker_sdk_rides_on_socketpair_channels():
    """Each HTTP connection is a socket a channel gives; one kept alive serves request after request."""
    opened = []

    def serve(sock):
        with sock, sock.makefile('rb') as requests:
            while True:
                line = requests.readline()
                if not line:
                    return
                while requests.readline() not in (b'\r\n', b''):
                    pass
                body = b'OK'
                sock.sendall(b'HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain\r\n'
                             b'Content-Length: 2\r\n\r\n' + body)

    def channel():
        ours, theirs = socket.socketpair()
        threading.Thread(target=serve, args=(theirs,), daemon=True).start()
        opened.append(ours)
        return ours
    client = docker_over_channels(channel, '1.41')
    assert client.ping() and client.ping() and client.ping()
    assert len(opened) == 1
    client.close()


def test_a_stale_socket_is_noticed_and_removed(short_tmp, monkeypatch):
    """The master was killed (or the machine restarted): its socket file stays, and nothing listens on it."""
    tmp_path = short_tmp
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(tmp_path))
    link = openssh.OpenSSH(RemoteTarget('gpu-box', project='p'), SETTINGS)
    assert not link.alive()  # no socket at all
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(link.path)
    listener.listen(1)
    assert link.alive()
    listener.close()  # the file stays, nobody listens
    assert os.path.exists(link.path) and not link.alive() and not os.path.exists(link.path)
    assert link.lost() is not None  # a channel that broke hears why (here: the connection ended)


def test_a_shell_command_on_the_shared_connection_takes_a_timeout_and_a_held_one_is_a_channel(monkeypatch):
    """hosts/shell.py's run (nvidia-smi) gives a timeout, and its Held (the GPU lock) needs no paramiko channel:
    over the ssh program both are an ``ssh ... HOST -- COMMAND`` process of the shared connection."""
    from tg_pipeline.hosts import shell
    link = openssh.OpenSSH(RemoteTarget('gpu-box', project='p'), SETTINGS)
    monkeypatch.setattr(link, 'command', lambda command: ['sh', '-c', command])
    host = type('Host', (), {'remote': True, 'connection': link, 'name': 'gpu-box'})()
    assert shell.run(host, 'echo hello; exit 3', timeout=30) == (3, 'hello\n', '')
    with pytest.raises(Exception, match='did not end|timed out|TimeoutExpired'):
        shell.run(host, 'sleep 5', timeout=0.2)
    held = shell.Held(host, 'echo locked; exec cat >/dev/null')
    assert held.wait_line(10, lambda: None) == 'locked'
    held.close()
    assert held.process.returncode == 0


def test_a_command_s_result_says_ok_as_fabric_s_does():
    """provenance/hostfacts.py keeps the remote's GPUs only when ``nvidia-smi`` answered (``result.ok``)."""
    assert openssh.Result(0, 'GPU 0\n', '').ok and not openssh.Result(127, '', 'not found').ok


class ExpiringLink:
    """A shared connection this process started whose master is gone before the first request (a ControlPersist
    shorter than the time to that request); ``comes_back``: a new login brings it back."""
    own, started, host, port = True, True, '10.0.0.7', 22

    def __init__(self, comes_back: bool):
        self.up, self.comes_back, self.restarts = False, comes_back, 0

    def alive(self):
        return self.up

    def restart(self):
        self.restarts += 1
        self.up = self.comes_back

    def channel_failure(self):
        return None

    def lost(self):
        return 'Control socket connect: No such file or directory'

    def channel(self, *remote):
        raise ConnectionAbortedError('the shared SSH connection is gone')

    def forwarded(self):
        return False  # no forward of the engine's socket yet: the channels

    def forward_engine(self):
        return False


def answering(monkeypatch, link):
    from tg_pipeline.compat import docker as compat_docker

    class Client:
        def close(self):
            pass

    def ping(client, timeout):
        if not link.up:
            raise ConnectionError('Connection aborted.')
    monkeypatch.setattr(compat_docker, 'docker_over_channels', lambda open_channel, version: Client())
    monkeypatch.setattr(compat_docker, 'negotiate', ping)
    remote = openssh.SharedRemote.__new__(openssh.SharedRemote)
    remote.connection, remote._docker, remote._forwarding = link, None, None
    remote.target = RemoteTarget('gpu-box', project='p')
    return remote


def test_a_master_gone_before_the_first_request_is_started_again_once(monkeypatch):
    link = ExpiringLink(comes_back=True)
    assert answering(monkeypatch, link).docker is not None
    assert link.restarts == 1


def test_a_master_that_stays_gone_is_said_as_the_connection_not_as_docker(monkeypatch):
    from tg_pipeline.errors import SSHError
    link = ExpiringLink(comes_back=False)
    with pytest.raises(SSHError) as raised:
        answering(monkeypatch, link).docker
    assert link.restarts == 1
    assert 'ended before the first Docker request' in raised.value.message
    assert 'control_persist' in raised.value.hint and 'dial-stdio' not in raised.value.render()


def test_channels_opened_at_once_by_threads_are_each_their_own(monkeypatch):
    """A sweep's threads open channels at once (the log followers, the collector, the starts): each gets the
    socket it made. Two HTTP connections on one socket read each other's answers (a list's end as a status
    line), and the orphaned socket's fd, closed by the collector, came back as a third channel's."""
    both_set = threading.Barrier(2, timeout=30)

    class Link(openssh.OpenSSH):
        @property
        def last_channel(self):
            return self.__dict__.get('_last')

        @last_channel.setter
        def last_channel(self, channel):
            self.__dict__['_last'] = channel
            if channel is not None:
                both_set.wait()  # both threads have made and noted their channel before either returns

    link = Link(RemoteTarget('gpu-box', project='p'), SETTINGS)
    monkeypatch.setattr(link, 'alive', lambda: True)
    monkeypatch.setattr(link, 'command', lambda *remote, forward='': ['cat'])  # each channel echoes its input
    made: dict[str, socket.socket] = {}
    threads = [threading.Thread(target=lambda name=name: made.__setitem__(name, link.channel('x')))
               for name in ('follower', 'collector')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert made['follower'] is not made['collector']
    for name, channel in made.items():
        channel.sendall(name.encode())
        assert channel.recv(100) == name.encode()
        channel.close()
