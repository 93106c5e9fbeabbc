"""SSH as users have it, on real sockets: settings from OpenSSH (Include, ssh:// and user@host forms), a stock
sshd (OpenSSH's default MaxSessions 10 / MaxStartups 10:30:100) holding 50+ images, a refused session, a
silent partition found by keepalives, and every login failure as one ERROR/TIP whose command works.

The stock sshd is our own, in the test remote's namespace on a free port, started and stopped here: the
shared one on port 22 serves other test runs at the same time. Faults hit only our own connections.
"""
import contextlib
import io
import os
import re
import signal
import stat
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from tg_pipeline.errors import SSHError
from tg_pipeline.ssh.connection import Remote, RemoteTarget, connect

from conftest import copy_project, imported_tops, need, wait_for
from target import TARGET

from .conftest import HOLD, STATE, release

pytestmark = pytest.mark.remote
LIMITS = ('MaxStartups', 'MaxSessions', 'PidFile', 'Port', 'ListenAddress')


class Sshd:
    def __init__(self, host, port, process, work):
        self.host, self.port, self.process, self.work = host, port, process, work

    def host_key(self) -> str:
        return ' '.join((STATE / 'remote' / 'ssh_host_ed25519_key.pub').read_text().split()[:2])


def _start_sshd(target, work: Path, port: int, extra: tuple = ()) -> subprocess.Popen | None:
    with contextlib.suppress(OSError):
        socket.create_connection((target.login().hostname, port), timeout=0.5).close()
        return None  # taken (another of our sshds): a listener there would not be ours
    base = (STATE / 'remote' / 'sshd_config').read_text().splitlines()
    if not (work / 'ca').exists():  # a user CA this sshd trusts: logins by certificate
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(work / 'ca')], check=True)
    lines = [f'ListenAddress {target.login().hostname}', 'ListenAddress 127.0.0.1',  # the latter: for jumps
             f'Port {port}', f'PidFile {work}/sshd.pid', f'TrustedUserCAKeys {work}/ca.pub', *extra]
    (work / 'sshd_config').write_text('\n'.join(lines + [l for l in base if l.split(' ')[0] not in LIMITS]) + '\n')
    log = open(work / 'sshd.log', 'ab')
    process = subprocess.Popen(['nsenter', f'--net=/run/netns/{target.netns}', '/usr/sbin/sshd',
                                '-D', '-e', '-f', str(work / 'sshd_config')], stdout=log, stderr=log,
                               start_new_session=True)
    for _ in range(50):
        if process.poll() is not None:
            return None  # the port is taken: try another
        try:
            socket.create_connection((target.login().hostname, port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGTERM)
    return None


def _own_sshd(target, tmp_path_factory, name: str, extra: tuple = ()):
    need(None if target.netns and target.login().identity_file else
         'TG_TEST_REMOTE_NETNS is empty or the destination has no identity file',
         "a second sshd in the test remote's network namespace, logged in to with its key", 'scripts/setup_remote.sh')
    work = tmp_path_factory.mktemp(name)
    for port in range(2222 + os.getpid() % 50, 2322):
        process = _start_sshd(target, work, port, extra)
        if process is not None:
            break
    else:
        pytest.fail(f'no port for a second sshd in 2222..2321: {(work / "sshd.log").read_text()}')
    assert 'MaxSessions' not in (work / 'sshd_config').read_text()
    yield Sshd(target.login().hostname, port, process, work)
    os.killpg(process.pid, signal.SIGTERM)  # the listener and its per-connection children
    process.wait(timeout=30)


@pytest.fixture(scope='module')
def stock_sshd(target, tmp_path_factory):
    """Our own sshd with OpenSSH's defaults (no MaxSessions/MaxStartups lines) on a free port of the namespace."""
    yield from _own_sshd(target, tmp_path_factory, 'stock_sshd')


@pytest.fixture(scope='module')
def no_forwarding_sshd(target, tmp_path_factory):
    """The same, refusing forwards to Unix sockets (as some hardened servers do)."""
    yield from _own_sshd(target, tmp_path_factory, 'no_forwarding_sshd', ('AllowStreamLocalForwarding no',))


def client_config(tmp_path, sshd, target, *, known=True, key=None, extra=(), alias='tg-stock') -> str:
    """An ssh config (used with -F / TG_PIPELINE_SSH_CONFIG) naming our sshd ``alias``."""
    known_hosts = tmp_path / 'known_hosts'
    known_hosts.write_text(f'[{sshd.host}]:{sshd.port} {sshd.host_key()}\n' if known else '')
    lines = [f'Host {alias}', *extra, f'  HostName {sshd.host}', f'  Port {sshd.port}', f'  User {target.login().user}',
             f'  IdentityFile {key or target.login().identity_file}', '  IdentitiesOnly yes',
             f'  UserKnownHostsFile {known_hosts}', '  GlobalKnownHostsFile /dev/null']  # (the first value wins)
    path = tmp_path / 'ssh_config'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.fixture
def many_images(remote_docker):  # noqa: F811
    """55 tiny images of our own on the remote (each its own layer), removed afterwards: 50+ in all."""
    token = uuid.uuid4().hex[:12]
    try:
        for i in range(55):
            context = io.BytesIO()
            with tarfile.open(fileobj=context, mode='w') as tar:
                for name, data in (('Dockerfile', b'FROM scratch\nCOPY f /f\n'), ('f', f'{token} {i}\n'.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            context.seek(0)
            remote_docker.images.build(fileobj=context, custom_context=True, tag=f'tg-ssh-test-{token}:{i}',
                                       labels={'tg_ssh_test': token}, rm=True)
        assert len(remote_docker.images.list()) >= 50
        yield token
    finally:
        for image in remote_docker.images.list(filters={'label': f'tg_ssh_test={token}'}):
            remote_docker.images.remove(image.id, force=True)


def test_transfer_and_check_remote_stay_within_stock_sshd_limits(project, stock_sshd, target, many_images,
                                                                 tmp_path):
    env = {'TG_PIPELINE_SSH_CONFIG': client_config(tmp_path, stock_sshd, target), 'EXAMPLE_VARIABLE': 'x'}
    project.edit('jobs/example_job.py', "log('SUCCESS')", f"log('SUCCESS {many_images}')")
    result = project.doit('run_remote', 'job=ExampleJob', 'host=tg-stock', 'transfer=ssh', 'registry=', env=env)
    assert f'INFO: SUCCESS {many_images}' in result.stdout and 'transfer: ' in result.stdout
    checked = project.doit('check_remote', 'host=tg-stock', env=env)
    assert 'all checks passed' in checked.stdout.splitlines()


def test_host_through_an_include_and_as_an_address(project, stock_sshd, target, tmp_path):  # noqa: F811
    included = client_config(tmp_path, stock_sshd, target, alias=f'{stock_sshd.host} tg-included')
    main = tmp_path / 'main_config'
    main.write_text(f'Include {included}\n')
    env = {'TG_PIPELINE_SSH_CONFIG': str(main)}
    user = target.login().user
    for host in ('tg-included', f'ssh://{user}@{stock_sshd.host}:{stock_sshd.port}', f'{user}@tg-included'):
        result = project.doit('check_remote', f'host={host}', 'registry=', env=env)
        assert f'[ OK ] ssh login: {user}@{stock_sshd.host}:{stock_sshd.port}' in result.stdout, host


@pytest.mark.parametrize('how', ['ProxyJump tg-stock', 'ProxyCommand ssh -F {config} -W %h:%p tg-stock'])
def test_through_a_jump_host_or_a_proxy_command(project, stock_sshd, target, tmp_path, how):
    """The inner host listens on the namespace's own 127.0.0.1: only the jump (or the proxy) reaches it."""
    config = client_config(tmp_path, stock_sshd, target)
    with open(tmp_path / 'known_hosts', 'a') as known:
        known.write(f'[127.0.0.1]:{stock_sshd.port} {stock_sshd.host_key()}\n')
    with open(config, 'a') as file:
        file.write(f'Host tg-inner\n  HostName 127.0.0.1\n  Port {stock_sshd.port}\n  User {target.login().user}\n'
                   f'  IdentityFile {target.login().identity_file}\n  UserKnownHostsFile {tmp_path}/known_hosts\n'
                   f'  {how.format(config=config)}\n')
    result = project.doit('check_remote', 'host=tg-inner', 'registry=', env={'TG_PIPELINE_SSH_CONFIG': config})
    assert f'[ OK ] ssh login: {target.login().user}@127.0.0.1:{stock_sshd.port}' in result.stdout
    assert '[ OK ] docker on the remote: ' in result.stdout


def new_key(tmp_path, name):
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(tmp_path / name)], check=True)
    return tmp_path / name


def test_login_with_a_certificate_file(stock_sshd, target, tmp_path):
    """A key no authorized_keys lists, certified by the CA the sshd trusts, its certificate named by CertificateFile."""
    key = new_key(tmp_path, 'certified')
    subprocess.run(['ssh-keygen', '-q', '-s', str(stock_sshd.work / 'ca'), '-I', 'tg-test', '-n',
                    target.login().user, str(key) + '.pub'], check=True)
    cert = tmp_path / 'elsewhere.pub'
    (tmp_path / 'certified-cert.pub').rename(cert)  # not beside the key: only CertificateFile finds it
    config = client_config(tmp_path, stock_sshd, target, key=key, extra=[f'  CertificateFile {cert}'])
    with Remote(RemoteTarget('tg-stock', ssh_config=config)) as remote:
        assert remote.connection.auth.offered == [f'{key} with its certificate']
        assert run_command(remote, 'whoami') == target.login().user


def run_command(remote, command):
    from tg_pipeline.ssh.connection import run
    return run(remote.connection, command).stdout.strip()


def test_login_with_a_key_of_the_agent_named_by_identity_agent(stock_sshd, target, tmp_path):
    socket_path = tmp_path / 'agent.sock'
    agent = subprocess.Popen(['ssh-agent', '-D', '-a', str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if socket_path.exists():
                break
            time.sleep(0.1)
        subprocess.run(['ssh-add', '-q', target.login().identity_file], check=True,
                       env={**os.environ, 'SSH_AUTH_SOCK': str(socket_path)})
        config = client_config(tmp_path, stock_sshd, target, key=tmp_path / 'no_such_key',
                               extra=[f'  IdentityAgent {socket_path}', '  IdentitiesOnly no'])
        with Remote(RemoteTarget('tg-stock', ssh_config=config)) as remote:
            assert [o for o in remote.connection.auth.offered if o.startswith('agent key SHA256:')]
            assert run_command(remote, 'whoami') == target.login().user
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def test_a_refused_session_names_max_sessions(stock_sshd, target, tmp_path):  # noqa: F811
    stock = RemoteTarget('tg-stock', ssh_config=client_config(tmp_path, stock_sshd, target))
    with Remote(stock) as remote:
        held = []
        with pytest.raises(paramiko.ChannelException):
            for _ in range(20):
                held.append(remote.connection.transport.open_session())
        assert len(held) == 10  # OpenSSH's default MaxSessions
        with pytest.raises(SSHError) as info:
            remote.docker.ping()
    text = info.value.render()
    assert text.startswith(f'ERROR: the SSH server of {remote.name} refused to open another session')
    assert 'its MaxSessions limit is reached' in text and '\nTIP: ' in text and 'set MaxSessions 10 (or more)' in text


def ours(client, job, project):
    return client.containers.list(all=True, filters={'label': project.labels(job)}, ignore_removed=True)


def local_port_of(pid: int, sshd) -> int:
    """The local port of process ``pid``'s connection to ``sshd`` (with openssh: the shared connection's process)."""
    listing = subprocess.run(['ss', '-tnpH', 'state', 'established', 'dst', f'{sshd.host}:{sshd.port}'],
                             capture_output=True, text=True, check=True).stdout
    ports = [int(line.split()[2].rsplit(':', 1)[1]) for line in listing.splitlines() if f'pid={pid},' in line]
    assert len(ports) == 1, listing
    return ports[0]


def drop_rules(sshd, port: int, link: str) -> list[list[str]]:
    """iptables rules that drop our connection (local ``port``) to ``sshd`` on this machine's ``link`` to it."""
    return [['OUTPUT', '-o', link, '-p', 'tcp', '-d', sshd.host, '--dport', str(sshd.port), '--sport', str(port),
             '-j', 'DROP'],
            ['INPUT', '-i', link, '-p', 'tcp', '-s', sshd.host, '--sport', str(sshd.port), '--dport', str(port),
             '-j', 'DROP']]


def shared_connection(project, host: str, config: str):
    """The shared connection (OpenSSH master) of ``project`` to ``host`` with the ssh config file ``config``."""
    from tg_pipeline.ssh.openssh import OpenSSH
    from tg_pipeline.ssh.settings import RemoteTarget
    target = RemoteTarget(host, ssh_config=config, project=project.id)
    return OpenSSH(target, target.settings())


@pytest.mark.parametrize('client', ['openssh', 'paramiko'])
def test_silent_partition_fails_the_task_and_the_job_goes_on(project, stock_sshd, target, remote_docker,  # noqa: F811
                                                            tmp_path, client):
    need(None if target.link else 'TG_TEST_LINK is empty', "this machine's network interface to the test remote",
         'scripts/setup_remote.sh (or set TG_TEST_LINK)')
    config = client_config(tmp_path, stock_sshd, target,
                           extra=['  ServerAliveInterval 2', '  ServerAliveCountMax 3'])
    env = {'TG_PIPELINE_SSH_CONFIG': config, 'TG_PIPELINE_SSH_CLIENT': client}
    args = ('job=Counter', 'host=tg-stock', 'jobs.Counter.args=[45, 2]')  # ~90 s
    project.doit('push', *args)
    process = project.popen('run_remote', *args, HOLD, env=env)
    rules = []
    try:
        deadline = time.time() + 120
        while not [c for c in ours(remote_docker, 'Counter', project) if c.status == 'running']:
            assert process.poll() is None and time.time() < deadline, process.communicate()
            time.sleep(0.2)
        run_id = ours(remote_docker, 'Counter', project)[0].labels['tg_pipeline.run_id']
        saved = project.path(f'build/Counter/runs/remote/{run_id}.out')  # doit follows the run: its log grows
        wait_for(lambda: saved.exists() and 'line 0\n' in saved.read_text(), what='doit to follow the run')
        ssh = shared_connection(project, 'tg-stock', config).master_pid() if client == 'openssh' else process.pid
        rules = drop_rules(stock_sshd, local_port_of(ssh, stock_sshd), target.link)
        for rule in rules:
            subprocess.run(['iptables', '-I', *rule], check=True)
        stdout, stderr = process.communicate(timeout=60)  # keepalives: dead after ~8 s of silence
    finally:
        for rule in rules:
            subprocess.run(['iptables', '-D', *rule], check=False)
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert re.search(r'ERROR: the connection to remote \S+ was lost during run \S+ \(\S+ port \d+ has not answered '
                     r'for \d+ s: 3 keepalives unanswered \(ServerAliveInterval 2 s x ServerAliveCountMax 3\)\); '
                     r'the job keeps running there and nothing of it is lost', stderr), stderr
    assert re.search(r'TIP: re-attach and see its whole output: doit logs job=Counter where=remote run_id=\S+ '
                     r'follow=1', stderr), stderr
    assert stderr.count('ERROR: ') == 1 and 'Traceback' not in stderr and 'paramiko' not in stderr.lower()
    run_id = re.search(r'was lost during run (\S+)', stderr).group(1)
    assert [c.status for c in ours(remote_docker, 'Counter', project)] == ['running']
    assert release(*ours(remote_docker, 'Counter', project)) == 1
    followed = project.doit('logs', 'job=Counter', 'where=remote', f'run_id={run_id}', 'follow=1', 'host=tg-stock',
                            env=env)
    assert re.findall(r'^line \d+$', followed.stdout, re.M) == [f'line {i}' for i in range(45)]
    assert 'Result: 45' in followed.stdout
    assert ours(remote_docker, 'Counter', project) == []


# --- one shared connection (OpenSSH ControlMaster) per host and project -----------------------------------------
def logins(sshd) -> int:
    """Logins our stock sshd accepted so far (its log)."""
    return (sshd.work / 'sshd.log').read_text(errors='replace').count('Accepted publickey for')


def test_one_login_serves_many_commands_and_a_killed_master_is_replaced(project, stock_sshd, target, tmp_path):
    config = client_config(tmp_path, stock_sshd, target)
    env = {'TG_PIPELINE_SSH_CONFIG': config, 'TG_PIPELINE_SSH_CLIENT': 'openssh'}
    args = ('job=ExampleJob', 'host=tg-stock', 'transfer=ssh', 'registry=')
    before = logins(stock_sshd)
    project.doit('run_remote', *args, env=env)
    for command in ('status', 'logs', 'result'):
        project.doit(command, 'job=ExampleJob', 'where=remote', 'host=tg-stock', env=env)
    project.doit('run_remote', *args, env=env)
    assert logins(stock_sshd) - before == 1  # five commands, each with several Docker channels: one login
    for command in (('run_remote', *args), ('status', 'job=ExampleJob', 'where=remote', 'host=tg-stock')):
        assert imported_tops(project, *command, env=env) & {'paramiko', 'fabric'} == set(), command
    assert logins(stock_sshd) - before == 1
    link = shared_connection(project, 'tg-stock', config)
    master = link.master_pid()
    assert master and stat.S_IMODE(os.stat(os.path.dirname(link.path)).st_mode) == 0o700
    other = shared_connection(copy_project('basic', tmp_path / 'other'), 'tg-stock', config)
    assert other.path != link.path  # another project: another master
    os.kill(master, signal.SIGKILL)  # its socket stays behind, stale
    status = project.doit('status', 'job=ExampleJob', 'where=remote', 'host=tg-stock', env=env)
    assert 'ERROR' not in status.stderr and status.stderr.strip() == '', status.stderr
    assert link.master_pid() not in (None, master)  # replaced, without a word
    assert logins(stock_sshd) - before == 2
    link.exit()
    project.doit('status', 'job=ExampleJob', 'where=remote', 'host=tg-stock', 'remote.control_persist=1', env=env)
    assert wait_for(lambda: link.master_pid() is None, timeout=10, what='the master to end after ControlPersist')


def shared_target(config: str):
    from tg_pipeline.ssh.settings import RemoteTarget as Target
    return Target('tg-stock', ssh_config=config, project=f'test-{uuid.uuid4().hex[:8]}')


def counted(monkeypatch, method: str) -> list:
    """The calls of OpenSSH.``method`` from now on (their arguments), made as they were."""
    from tg_pipeline.ssh.openssh import OpenSSH
    calls, real = [], getattr(OpenSSH, method)
    monkeypatch.setattr(OpenSSH, method, lambda self, *args, **kw: calls.append(args) or real(self, *args, **kw))
    return calls


def test_after_the_first_command_the_engine_socket_is_forwarded(stock_sshd, target, tmp_path, monkeypatch):
    """The first command after a login uses docker system dial-stdio channels and makes the forward; the next
    ones connect to it (no ssh process here, no docker CLI there); a new master makes it again."""
    from tg_pipeline.ssh.openssh import SharedRemote
    shared = shared_target(client_config(tmp_path, stock_sshd, target))
    with SharedRemote(shared) as first:
        assert first.docker.api.version()['ApiVersion']
    link = first.connection
    assert link.forwarded() and stat.S_IMODE(os.stat(link.forward_path).st_mode) == 0o600  # the user's only
    channels = counted(monkeypatch, 'channel')
    with SharedRemote(shared) as second:
        second.docker.api.containers(all=True)
        assert second.docker.api.version()['ApiVersion']
    assert channels == []
    os.kill(link.master_pid(), signal.SIGKILL)  # its control socket and its forward's socket stay behind, stale
    with SharedRemote(shared) as third:
        assert third.docker.api.version()['ApiVersion']  # a new master, without a word
    assert channels == [('docker', 'system', 'dial-stdio')] and link.forwarded()
    link.exit()
    assert not os.path.exists(link.forward_path)


@pytest.mark.parametrize('case', ['refused by sshd', 'an engine on TCP'])
def test_where_the_engine_cannot_be_forwarded_the_channels_serve(no_forwarding_sshd, stock_sshd, target, tmp_path,
                                                                 monkeypatch, case):
    from tg_pipeline.ssh import openssh
    if case == 'an engine on TCP':  # what the remote's docker CLI would say with DOCKER_HOST=tcp://...
        monkeypatch.setattr(openssh, 'ENGINE_ENDPOINT', 'echo tcp://127.0.0.1:2375')
    sshd = no_forwarding_sshd if case == 'refused by sshd' else stock_sshd
    shared = shared_target(client_config(tmp_path, sshd, target))
    with openssh.SharedRemote(shared) as first:
        assert first.docker.api.version()['ApiVersion']
    link = first.connection
    assert not link.forwarded() and os.path.exists(link.path + '.noforward')
    asked, channels = counted(monkeypatch, 'run'), counted(monkeypatch, 'channel')
    with openssh.SharedRemote(shared) as second:
        assert second.docker.api.version()['ApiVersion']
    assert asked == [] and channels  # remembered while this master lives: not asked again
    link.exit()


def test_the_shared_connection_goes_through_a_jump_host(project, stock_sshd, target, tmp_path):
    """ProxyJump to a host only the jump host reaches: the master logs in through it, once."""
    config = client_config(tmp_path, stock_sshd, target)
    with open(tmp_path / 'known_hosts', 'a') as known:
        known.write(f'[127.0.0.1]:{stock_sshd.port} {stock_sshd.host_key()}\n')
    with open(config, 'a') as file:
        file.write(f'Host tg-inner\n  HostName 127.0.0.1\n  Port {stock_sshd.port}\n  User {target.login().user}\n'
                   f'  IdentityFile {target.login().identity_file}\n  UserKnownHostsFile {tmp_path}/known_hosts\n'
                   '  ProxyJump tg-stock\n')
    env = {'TG_PIPELINE_SSH_CONFIG': config, 'TG_PIPELINE_SSH_CLIENT': 'openssh', 'EXAMPLE_VARIABLE': 'x'}
    before = logins(stock_sshd)
    args = ('job=ExampleJob', 'host=tg-inner', 'transfer=ssh', 'registry=')
    result = project.doit('run_remote', *args, env=env)
    assert 'INFO: SUCCESS' in result.stdout
    project.doit('status', 'job=ExampleJob', 'where=remote', 'host=tg-inner', env=env)
    assert logins(stock_sshd) - before == 2  # the jump host and the inner host, once each
    link = shared_connection(project, 'tg-inner', config)
    assert link.master_pid()
    link.exit()


@pytest.mark.parametrize('case', ['refused', 'unknown key', 'refused login', 'dns'])
def test_openssh_login_failures_are_one_paragraph(capfd, stock_sshd, target, tmp_path, case):
    from tg_pipeline.ssh.openssh import SharedRemote
    config = client_config(tmp_path, stock_sshd, target, known=case != 'unknown key',
                           key=new_key(tmp_path, 'stranger') if case == 'refused login' else None)
    host = {'dns': 'no-such-host.invalid', 'refused': f'ssh://{target.login().user}@127.0.0.1:1'}.get(
        case, 'tg-stock')
    capfd.readouterr()
    with pytest.raises(SSHError) as info:
        SharedRemote(RemoteTarget(host, ssh_config=config, project=f'test-{uuid.uuid4().hex[:8]}')).docker
    assert capfd.readouterr() == ('', '')
    text = info.value.render()
    assert text.startswith('ERROR: ') and text.count('ERROR: ') == 1 and text.count('\nTIP: ') == 1, text
    expected = {'refused': 'nothing accepts SSH connections on 127.0.0.1 port 1', 'dns': 'does not resolve',
                'unknown key': 'the host key of', 'refused login': 'was refused'}[case]
    assert expected in text, text


# --- every login failure: one ERROR/TIP paragraph, nothing of paramiko's own, a TIP that works -----------------
def login_failure(capfd, host, config, **target) -> str:
    """The rendered error of logging in to ``host`` with ssh config ``config``; nothing else was printed."""
    capfd.readouterr()
    with pytest.raises(SSHError) as info:
        connect(RemoteTarget(host, ssh_config=config, **target))
    out, err = capfd.readouterr()
    assert (out, err) == ('', '')
    text = info.value.render()
    assert text.startswith('ERROR: ') and text.count('ERROR: ') == 1 and text.count('\nTIP: ') == 1, text
    assert not re.search(r'@\S+:\d+', text.split('\nTIP: ')[1]), text  # never user@host:22 in a command
    return text


def pasted(command: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', '-c', command], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def tip_command(text: str, after: str) -> str:
    return text.split('\nTIP: ')[1].split(after, 1)[1].split('; ')[0].strip()


def plain_config(tmp_path, host='*') -> str:
    path = tmp_path / 'plain_config'
    path.write_text(f'Host {host}\n  ConnectTimeout 2\n  User nobody-here\n  BatchMode yes\n'
                    f'  UserKnownHostsFile {tmp_path}/no_known_hosts\n  GlobalKnownHostsFile /dev/null\n')
    return str(path)


@pytest.fixture
def silent_server():
    """A TCP port on 127.0.0.1 that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    accepted, stop = [], threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for sock in accepted + [server]:
        sock.close()


def test_no_ssh_banner(capfd, silent_server, tmp_path):
    config = plain_config(tmp_path)
    text = login_failure(capfd, '127.0.0.1', config, port=silent_server, connect_timeout=2)
    assert text.startswith(f'ERROR: 127.0.0.1 port {silent_server} accepts TCP connections but sent no SSH banner '
                           'within 2 s: no SSH server answers on that port')
    command = tip_command(text, 'try: ')
    assert command == f'ssh -F {config} -p {silent_server} nobody-here@127.0.0.1'
    assert 'banner exchange' in pasted(command + ' true').stderr


PARAMIKO_LOGS = """
import sys
from tg_pipeline.errors import SSHError
from tg_pipeline.ssh.connection import SSHConnection
from tg_pipeline.ssh.settings import resolve
connection = SSHConnection(resolve('127.0.0.1', port=int(sys.argv[1]), user='nobody', connect_timeout=1))
connection.connect_kwargs['timeout'] = 5  # the banner wait (1 s) fails inside paramiko's thread, which logs it
try:
    connection.open()
except SSHError as e:
    print(e.render())
connection.close()
"""


def test_paramiko_log_lines_stay_out_of_stderr(silent_server, project):
    """In a process of its own: pytest captures log records, a user's doit process does not."""
    done = subprocess.run([sys.executable, '-c', PARAMIKO_LOGS, str(silent_server)], capture_output=True, text=True,
                          timeout=60, env=project.env())
    assert 'sent no SSH banner' in done.stdout
    assert done.stderr == ''  # plain paramiko prints "Exception (client): ..." and a traceback here


def test_connection_refused(capfd, tmp_path):
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    text = login_failure(capfd, '127.0.0.1', plain_config(tmp_path), port=port)
    assert text.startswith(f'ERROR: nothing accepts SSH connections on 127.0.0.1 port {port} (connection refused)')
    assert 'Connection refused' in pasted(tip_command(text, 'try: ') + ' true').stderr


def test_connect_timeout(capfd, tmp_path):
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(0)  # never accepts: once its queue is full, new connections are not answered
    port = server.getsockname()[1]
    queued = [socket.create_connection(('127.0.0.1', port), timeout=2) for _ in range(1)]
    try:
        text = login_failure(capfd, '127.0.0.1', plain_config(tmp_path), port=port, connect_timeout=1)
        assert text.startswith(f'ERROR: 127.0.0.1 port {port} did not answer within 1 s (connection timed out)')
        assert 'timed out' in pasted(tip_command(text, 'try: ') + ' true').stderr
    finally:
        for sock in queued + [server]:
            sock.close()


def test_dns_failure(capfd, tmp_path):
    text = login_failure(capfd, 'no-such-host.invalid', plain_config(tmp_path))
    assert text.startswith('ERROR: the host name no-such-host.invalid does not resolve (')
    assert 'Could not resolve hostname' in pasted(tip_command(text, 'try: ') + ' true').stderr


def test_ssh_config_openssh_refuses(project, tmp_path):
    bad = tmp_path / 'bad_config'
    bad.write_text(f'Host {TARGET.alias}\n  HostNmae typo\n')
    result = project.doit('status', 'job=Counter', 'where=remote', env={'TG_PIPELINE_SSH_CONFIG': str(bad)},
                          check=False)
    assert result.returncode != 0 and result.stderr.count('ERROR: ') == 1 and 'Traceback' not in result.stderr
    assert f'ERROR: OpenSSH cannot resolve the SSH settings of {TARGET.alias}: ' in result.stderr
    assert f'{bad}: line 2: Bad configuration option: hostnmae' in result.stderr
    command = re.search(r'then check with: (.+)', result.stderr).group(1)
    assert 'Bad configuration option' in pasted(command).stderr  # the same complaint, when run by hand


def test_unknown_host_key_tip_trusts_it(capfd, stock_sshd, target, tmp_path):
    config = client_config(tmp_path, stock_sshd, target, known=False)
    text = login_failure(capfd, 'tg-stock', config)
    assert text.startswith(f'ERROR: the host key of {stock_sshd.host} (alias tg-stock) is unknown')
    command = tip_command(text, 'check the key and trust it: ').split(' (or set')[0]
    assert command == f'ssh-keyscan -p {stock_sshd.port} {stock_sshd.host} >> {tmp_path}/known_hosts'
    assert pasted(command).returncode == 0
    connect(RemoteTarget('tg-stock', ssh_config=config)).close()  # trusted now


def test_changed_host_key_tip_replaces_it(capfd, stock_sshd, target, tmp_path):
    config = client_config(tmp_path, stock_sshd, target)
    other = paramiko.Ed25519Key.from_private_key_file(str(new_key(tmp_path, 'other')))  # any other key
    (tmp_path / 'known_hosts').write_text(f'[{stock_sshd.host}]:{stock_sshd.port} ssh-ed25519 {other.get_base64()}\n')
    text = login_failure(capfd, 'tg-stock', config)
    assert text.startswith(f'ERROR: the host key of {stock_sshd.host} (alias tg-stock) has CHANGED')
    remove = tip_command(text, 'remove the old key: ')
    trust = text.split('and trust it: ')[1].strip()
    assert remove == f"ssh-keygen -f {tmp_path}/known_hosts -R '[{stock_sshd.host}]:{stock_sshd.port}'"
    assert pasted(remove).returncode == 0 and pasted(trust).returncode == 0
    connect(RemoteTarget('tg-stock', ssh_config=config)).close()


def test_login_refused_names_the_keys_offered(capfd, stock_sshd, target, tmp_path):
    key = tmp_path / 'wrong_key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
    config = client_config(tmp_path, stock_sshd, target, key=key)
    text = login_failure(capfd, 'tg-stock', config)
    assert text.startswith(f'ERROR: SSH login as {target.login().user} to {stock_sshd.host} (alias tg-stock) was '
                           f'refused (offered: {key})')
    assert 'Permission denied' in pasted(tip_command(text, 'try: ') + ' -o BatchMode=yes true').stderr


def test_no_docker_engine_here_is_one_paragraph(project):
    result = project.doit('run_local', 'job=ExampleJob', env={'DOCKER_HOST': 'unix:///nonexistent.sock'},
                          check=False)
    assert result.returncode != 0 and 'Traceback' not in result.stdout + result.stderr
    assert result.stderr.count('ERROR: ') == 1 and result.stderr.count('TIP: ') == 1, result.stderr
    assert 'ERROR: no Docker engine answers at unix:///nonexistent.sock' in result.stderr
