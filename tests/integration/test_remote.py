"""Remote delivery against the simulated remote host (network namespace, its own engine, sshd, registry).

No mock: images really travel through the registry into the other engine's
store; the assertions read that engine directly through its socket.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import need, ran
from target import TARGET

from .conftest import HOLD, release

pytestmark = pytest.mark.remote

ENV_VALUES = {
    'V_SPACES': 'several words  with   spaces ',
    'V_DQUOTE': 'a "double" quote and a lone "',
    'V_SQUOTE': "it's a 'single' quote and a lone '",
    'V_SUBST': '$(id -un)',
    'V_BACKTICK': '`id -un`',
    'V_VAR': '$HOME and ${USER}',
    'V_SEMI': 'a; echo injected; b',
    'V_NEWLINE': 'first line\nsecond line\n',
    'V_UNICODE': 'naïve café ✓ 日本語 😀',
    'V_MIXED': '"\'$(x)`y`;\\ \t&|<>*?~#',
    'V_BACKSLASH': 'C:\\path\\to\\n not a newline',
    'V_EMPTY': '',
    'V_DASH': '--privileged -v /:/host',
}


def forget_image(client, reference):
    try:
        client.images.remove(reference, force=True)
    except Exception:
        pass


def test_run_remote_example_job_end_to_end(project, remote_docker):
    image = f'{TARGET.registry}/tgtest-examplejob:0.0.0'
    forget_image(remote_docker, image)
    result = project.doit('run_remote', 'job=ExampleJob', env={'EXAMPLE_VARIABLE': 'TEST'})
    out = result.stdout
    for line in ['Welcome to Training Grounds!', 'Variable EXAMPLE_VARIABLE is found: True', 'SUCCESS',
                 'Job has exited successfully', 'DONE. Exiting Training Grounds.']:
        assert f' INFO: {line}' in out
    # the image really travelled into the remote engine: the pull's one summary line (its progress bar's end)
    assert f'pull  {image} on ' in result.stderr and ' layers new' in result.stderr
    local_id = json.loads(project.read('build/ExampleJob/image.json'))['image_id']
    assert remote_docker.images.get(image).id == local_id
    assert remote_docker.containers.list(all=True, filters={'label': project.labels('ExampleJob')}) == []

    again = project.doit('run_remote', 'job=ExampleJob', env={'EXAMPLE_VARIABLE': 'TEST'})
    assert not ran(again.stdout, 'build_image:ExampleJob')
    assert not ran(again.stdout, 'push:ExampleJob')  # the registry still has that digest
    assert 'pull  ' not in again.stderr  # the remote still has that image id
    assert 'Variable EXAMPLE_VARIABLE is found: True' in again.stdout

    logs = project.doit('logs', 'job=ExampleJob', 'where=remote')
    assert 'Variable EXAMPLE_VARIABLE is found: True' in logs.stdout
    assert '# job ExampleJob, run ' in logs.stdout


def test_failing_remote_job_fails_with_its_traceback(project, target, remote_docker):
    result = project.doit('run_remote', 'job=FailingJob', check=False)
    assert result.returncode == 1
    assert f'ERROR: job FailingJob failed (remote {target.login().where} run)' in result.stderr
    assert 'RuntimeError: boom from the fixture' in result.stderr
    assert 'jobs/failing_job.py' in result.stderr


def test_env_values_arrive_byte_for_byte(project, remote_docker):
    result = project.doit('run_remote', 'job=EnvDump', env=ENV_VALUES)
    line = next(l for l in result.stdout.splitlines() if l.startswith('ENVDUMP '))
    received = json.loads(line[len('ENVDUMP '):])
    assert received == ENV_VALUES


def process_command_lines() -> list[bytes]:
    """Every process's command line on this machine (remote and local share the PID space)."""
    found = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / 'cmdline').read_bytes())
            except OSError:
                pass
    return found


def test_env_values_never_on_a_command_line_nor_in_the_image(project, remote_docker):
    secret = 'tg-secret-' + os.urandom(6).hex()
    process = project.popen('run_remote', 'job=SecretSleep', HOLD, env={'SECRET_TOKEN': secret})
    seen_running = False
    try:
        deadline = time.time() + 180
        while time.time() < deadline and process.poll() is None and not seen_running:
            running = remote_docker.containers.list(filters={'label': project.labels('SecretSleep')})
            if running:  # held: it keeps running until released below
                seen_running = True
                assert not [c for c in process_command_lines() if secret.encode() in c]
                env = running[0].attrs['Config']['Env']
                assert f'SECRET_TOKEN={secret}' in env  # it did arrive, as container config
            time.sleep(0.2)
    finally:
        release(*remote_docker.containers.list(filters={'label': project.labels('SecretSleep')}))
        out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    assert seen_running
    assert f'"SECRET_TOKEN": "{secret}"' in out  # printed by the job itself, nobody else
    assert secret not in err
    history = remote_docker.images.get(f'{TARGET.registry}/tgtest-secretsleep:0.0.0').history()
    assert secret not in json.dumps(history)
    assert secret not in project.path('build/SecretSleep/context/Dockerfile').read_text()


HOME_ALIAS = 'tg-home-alias'  # the Host alias of the test remote in ssh_home's config


def ssh_home(tmp_path, target, project, *, known_hosts=True, key=None) -> dict:
    """A $HOME with an ssh config that defines HOME_ALIAS for the test remote, used through TG_PIPELINE_SSH_CONFIG
    (OpenSSH reads the config of the passwd home, not of $HOME), and ``project`` pointed at that alias; its
    known_hosts is $HOME's, as TIP commands name it. ``key``: that identity file only (an agent's keys not)."""
    login = target.login()
    ssh = tmp_path / 'home' / '.ssh'
    ssh.mkdir(parents=True)
    identity = key or login.identity_file
    lines = [f'Host {HOME_ALIAS}', f'  HostName {login.hostname}', f'  User {login.user}', f'  Port {login.port}',
             *([f'  IdentityFile {identity}'] if identity else []), *(['  IdentitiesOnly yes'] if key else []),
             f'  UserKnownHostsFile {ssh / "known_hosts"}', '  GlobalKnownHostsFile /dev/null']
    (ssh / 'config').write_text('\n'.join(lines) + '\n')
    if known_hosts:
        (ssh / 'known_hosts').write_text(''.join(Path(f).read_text() for f in login.known_hosts))
    project.edit('pipeline.toml', f'host = "{target.remote}"', f'host = "{HOME_ALIAS}"')
    return {'HOME': str(tmp_path / 'home'), 'TG_PIPELINE_SSH_CONFIG': str(ssh / 'config')}


def test_unknown_host_key_is_refused_unless_accepted(project, target, remote_docker, tmp_path):
    env = ssh_home(tmp_path, target, project, known_hosts=False)
    result = project.doit('run_remote', 'job=ExampleJob', env=env, check=False)
    assert result.returncode != 0
    login = target.login()
    port = f'-p {login.port} ' if login.port != 22 else ''
    assert f'ERROR: the host key of {login.hostname} (alias {HOME_ALIAS}) is unknown' in result.stderr
    assert f'TIP: check the key and trust it: ssh-keyscan {port}{login.hostname} >> ~/.ssh/known_hosts' \
        in result.stderr
    assert 'Traceback' not in result.stderr
    accepted = project.doit('run_remote', 'job=ExampleJob', 'remote.accept_unknown_host_keys=true', env=env)
    assert 'SUCCESS' in accepted.stdout


def test_wrong_key_is_a_clear_ssh_error(project, target, remote_docker, tmp_path):
    key = tmp_path / 'wrong_key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
    env = ssh_home(tmp_path, target, project, key=key)
    result = project.doit('run_remote', 'job=ExampleJob', env=env, check=False)
    assert result.returncode != 0
    login = target.login()
    assert f'ERROR: SSH login as {login.user} to {login.hostname} (alias {HOME_ALIAS}) was refused' in result.stderr
    assert 'authorized_keys' in result.stderr


def test_wrong_user_is_a_clear_ssh_error(project, target, remote_docker):
    result = project.doit('run_remote', 'job=ExampleJob', f'remote.user={target.unknown_user}', check=False)
    assert result.returncode != 0
    assert f'ERROR: SSH login as {target.unknown_user} to {target.shown()} was refused' in result.stderr


@pytest.fixture
def nodocker_user(target):
    """A user of the test remote who logs in with the same key and may not use Docker."""
    need(None if target.nodocker_user else 'TG_TEST_NODOCKER_USER is empty',
         'a user of the test remote without Docker', 'scripts/setup_remote.sh (or set TG_TEST_NODOCKER_USER)')
    return target.nodocker_user


def test_docker_permission_denied_names_the_group(project, target, remote_docker, nodocker_user):
    user = nodocker_user
    result = project.doit('run_remote', 'job=ExampleJob', f'remote.user={user}', check=False)
    assert result.returncode != 0
    assert f'ERROR: user {user} may not use Docker on {target.login().hostname}: permission denied on the Docker ' \
           'socket' in result.stderr
    assert f'sudo usermod -aG docker {user}' in result.stderr


def test_unreachable_registry_is_a_clear_error(project, remote_docker):
    result = project.doit('run_remote', 'job=ExampleJob', 'registry=127.0.0.1:5999', check=False)
    assert result.returncode != 0
    assert 'ERROR: pushing 127.0.0.1:5999/tgtest-examplejob:0.0.0 failed' in result.stderr
    assert 'TIP: the registry 127.0.0.1:5999 is unreachable from this Docker engine' in result.stderr


def test_check_remote_reports_each_check(project, target, remote_docker, nodocker_user):
    result = project.doit('check_remote')
    lines = result.stdout.splitlines()
    for check in ['ssh login', 'docker on the remote', 'registry push from here', 'registry pull on the remote',
                  'remote versions']:
        assert any(l.startswith(f'[ OK ] {check}: ') for l in lines), result.stdout
    assert 'all checks passed' in lines
    bad = project.doit('check_remote', f'remote.user={nodocker_user}', check=False)
    assert bad.returncode != 0
    assert f'[FAIL] docker on the remote: user {nodocker_user} may not use Docker' in bad.stdout
    assert f'TIP: on {target.login().hostname}, add {nodocker_user} to the group' in bad.stdout


@pytest.fixture
def login_registry(target):
    """The test target's registry that wants a login: (address, user, password)."""
    password_file = Path(target.login_registry_password)
    need(None if target.login_registry and password_file.is_file() else
         f'TG_TEST_LOGIN_REGISTRY is empty or {password_file} is missing', 'a registry that wants a login',
         'scripts/setup_remote.sh (or set TG_TEST_LOGIN_REGISTRY, its _USER and _PASSWORD_FILE)')
    return target.login_registry, target.login_registry_user, password_file.read_text().strip()


def test_registry_refusing_the_push_says_so(project, login_registry, docker_client):
    registry, user, password = login_registry
    refused = project.doit('push', 'job=ExampleJob', f'registry={registry}', check=False)
    assert refused.returncode != 0
    assert f'ERROR: pushing {registry}/tgtest-examplejob:0.0.0 failed' in refused.stderr
    assert f'TIP: the registry {registry} wants a login: set username_env/password_env' in refused.stderr
    assert 'Traceback' not in refused.stderr
    address = f'address = "{TARGET.registry}"'
    project.edit('pipeline.toml', address, address + '\nusername_env = "TG_REG_USER"\npassword_env = "TG_REG_PASSWORD"')
    wrong = project.doit('push', 'job=ExampleJob', f'registry={registry}',
                         env={'TG_REG_USER': user, 'TG_REG_PASSWORD': 'not-the-password'}, check=False)
    assert wrong.returncode != 0 and 'refused the credentials' in wrong.stderr
    assert 'not-the-password' not in wrong.stdout + wrong.stderr
    pushed = project.doit('push', 'job=ExampleJob', f'registry={registry}',
                          env={'TG_REG_USER': user, 'TG_REG_PASSWORD': password})
    assert 'push:ExampleJob  ' in pushed.stdout and f'({registry}/tgtest-examplejob:0.0.0: ' in pushed.stdout
    assert password not in pushed.stdout + pushed.stderr
