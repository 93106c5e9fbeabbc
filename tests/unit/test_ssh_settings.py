"""SSH settings as OpenSSH resolves them (``ssh -G`` on a config file the test writes; no network), the
destination forms we accept, and paramiko's reader where no ssh program exists."""
import os
import shutil

import pytest

from tg_pipeline.ssh import settings as ssh_settings
from tg_pipeline.errors import ConfigError, SSHError
from tg_pipeline.ssh.settings import parse_destination, parse_jump, resolve

needs_ssh = pytest.mark.skipif(shutil.which('ssh') is None, reason='no ssh program (Debian: openssh-client)')


@pytest.mark.parametrize('text, expected', [
    ('gpu-box', ('', 'gpu-box', 0)),
    ('me@gpu-box', ('me', 'gpu-box', 0)),
    ('ssh://me@gpu-box:2222', ('me', 'gpu-box', 2222)),
    ('ssh://gpu-box', ('', 'gpu-box', 0)),
    ('ssh://me@[fe80::1]:2200/', ('me', 'fe80::1', 2200)),
])
def test_destination_forms(text, expected):
    assert parse_destination(text) == expected


@pytest.mark.parametrize('text', ['', 'ssh://me@box:port', 'two words', 'me@'])
def test_bad_destination_is_a_config_error(text):
    with pytest.raises(ConfigError) as info:
        parse_destination(text)
    assert info.value.key == 'remote.host' and 'ssh://me@gpu-box:2222' in info.value.hint


def test_jump_hops():
    assert parse_jump('jumper@bastion:2022') == ('jumper', 'bastion', 2022)
    assert parse_jump('bastion') == ('', 'bastion', 0)
    assert parse_jump('ssh://j@[::1]:22') == ('j', '::1', 22)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@needs_ssh
def test_include_match_and_tokens_are_resolved_by_openssh(tmp_path):
    write(tmp_path, 'hosts.conf', 'Host gpu-box\n  HostName 10.9.8.7\n  User trainer\n  Port 2201\n'
                                  f'  IdentityFile {tmp_path}/id_%h_%r\n  CertificateFile {tmp_path}/cert-%n.pub\n'
                                  '  ProxyJump hop@bastion:2022\n  IdentityAgent none\n'
                                  '  ServerAliveInterval 7\n  ServerAliveCountMax 5\n  ConnectTimeout 9\n'
                                  f'  UserKnownHostsFile {tmp_path}/known_%h\n  HostKeyAlias gpu-key\n')
    config = write(tmp_path, 'config', f'Include {tmp_path}/hosts.conf\n'
                                       'Match host 10.9.8.7\n  StrictHostKeyChecking accept-new\n')
    s = resolve('gpu-box', config_file=config)
    assert (s.hostname, s.user, s.port, s.alias) == ('10.9.8.7', 'trainer', 2201, 'gpu-box')
    assert s.identity_files == (f'{tmp_path}/id_10.9.8.7_trainer',)
    assert s.certificate_files == (f'{tmp_path}/cert-gpu-box.pub',)
    assert s.proxy_jump == 'hop@bastion:2022' and s.identity_agent == 'none'
    assert (s.alive_interval, s.alive_count, s.connect_timeout) == (7, 5, 9)
    assert s.known_hosts[0] == f'{tmp_path}/known_10.9.8.7'
    assert s.accept_new_host_keys and s.host_key_alias == 'gpu-key'
    assert s.command == f'ssh -F {config} -p 2201 trainer@gpu-box'


@needs_ssh
def test_remote_values_win_and_defaults_fill_in(tmp_path):
    config = write(tmp_path, 'config', 'Host box\n  User fromconfig\n  Port 2200\n'
                                       f'  IdentityFile {tmp_path}/config_key\n')
    s = resolve('box', user='me', port=2222, identity_file=f'{tmp_path}/mine', config_file=config,
                connect_timeout=4)
    assert (s.user, s.port, s.connect_timeout) == ('me', 2222, 4)
    assert s.identity_files == (f'{tmp_path}/mine', f'{tmp_path}/config_key')
    assert s.alive_interval == ssh_settings.DEFAULT_ALIVE_INTERVAL and s.alive_count == 3  # none configured
    uri = resolve('ssh://you@box:2300', config_file=config)
    assert (uri.user, uri.port, uri.hostname) == ('you', 2300, 'box')
    assert resolve('them@box', config_file=config).user == 'them'


@needs_ssh
def test_a_config_openssh_refuses_is_one_error_naming_the_line(tmp_path):
    config = write(tmp_path, 'config', 'Host box\n  NoSuchOption yes\n')
    with pytest.raises(SSHError) as info:
        resolve('box', config_file=config)
    text = info.value.render()
    assert text.startswith('ERROR: OpenSSH cannot resolve the SSH settings of box: ')
    assert 'line 2: Bad configuration option: nosuchoption' in text
    assert f'TIP: fix what it names in {config}, then check with: ssh -F {config} -G box' in text


def test_a_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve('box', config_file=str(tmp_path / 'nope'))
    assert info.value.key == 'remote.ssh_config'


def test_without_an_ssh_program_paramiko_reads_the_config(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh_settings.shutil, 'which', lambda name: None)
    config = write(tmp_path, 'config', 'Host box\n  HostName 10.1.2.3\n  User u\n  Port 2022\n'
                                       f'  IdentityFile {tmp_path}/k\n  ServerAliveInterval 3\n')
    s = resolve('box', config_file=config)
    assert (s.hostname, s.user, s.port, s.identity_files, s.alive_interval) == \
        ('10.1.2.3', 'u', 2022, (f'{tmp_path}/k',), 3)
    assert s.known_hosts[0] == os.path.join(ssh_settings.home(), '.ssh', 'known_hosts')


def test_the_ssh_socket_sends_each_write_at_once_and_other_transports_are_left_alone():
    """TCP_NODELAY on the login's TCP socket: a Docker POST (headers, then body) otherwise waits ~40 ms for the
    server's delayed ACK. A gateway's channel or a ProxyCommand's pipe is not touched."""
    import socket
    from types import SimpleNamespace
    from tg_pipeline.ssh.connection import no_delay
    server = socket.create_server(('127.0.0.1', 0))
    client = socket.create_connection(server.getsockname())
    try:
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        no_delay(SimpleNamespace(sock=client))
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        client.close()
        server.close()
    left, right = socket.socketpair()
    with left, right:
        no_delay(SimpleNamespace(sock=left))  # a unix socket: no Nagle, nothing to set (and no error)
    no_delay(SimpleNamespace(sock=object()))  # a ProxyCommand object
    no_delay(SimpleNamespace())
