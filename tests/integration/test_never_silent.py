"""Never a silent success (issue 25), on the real engines, the simulated remote and the registry: the faults a
hostile trial found, with its exact inputs. Every state file corrupted in turn; a return value that cannot be kept;
the registry cut off during a push; settings of a wrong form; the engine restarted under a run (an engine of this
test's own); the doit process killed while its job ran; secret_env values, which nothing shows."""
import hashlib
import json
import os
import re
import secrets as random_secrets
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import wait_for

from .conftest import HOLD, STATE, release, running_containers
from .test_lifecycle import engine, ours, run_id_of

RESULT = "Result: {'sum': 45, 'squares': [0, 1, 4, 9]}"
CORRUPTIONS = {'list': b'[1,2,3]', 'null': b'null', 'str': b'"str"', 'wrong type': b'{"image_id": 5}',
               'garbage': b'\x00\xff garbage {{ not json', 'truncated': None}  # None: the file's first half


def ran_or_said_why(outcome, expected=RESULT) -> str:
    """The command either ran (said its outcome, exit 0) or failed with one ERROR (exit status not 0), never a
    traceback of ours, never exit 0 without the outcome; which of the two."""
    assert 'Traceback' not in outcome.stderr, outcome.stderr
    if outcome.returncode == 0:
        assert expected in outcome.stdout, outcome.stdout + outcome.stderr
        return 'ran'
    assert 'ERROR: ' in outcome.stderr, outcome.stdout + outcome.stderr
    return 'error'


def corrupt(path: Path, how: str, original: bytes) -> None:
    path.write_bytes(original[:len(original) // 2] if CORRUPTIONS[how] is None else CORRUPTIONS[how])


# --- 1. every state file, corrupted in turn ----------------------------------------------------------------
STATE_FILES = ['.steps/serialize.json', '.steps/sdist.json', '.steps/dockerfile.json', '.steps/build_image.json',
               '.steps/push.json', 'image.json', 'push.json', 'deps.json', 'image_config.json', 'import_check.json',
               'pyproject.toml.json', 'ssh_sent.json', '../.doit.sqlite3']
VIA_SSH = {'ssh_sent.json'}  # written by a run with transfer=ssh


@pytest.mark.parametrize('name', STATE_FILES)
def test_a_corrupt_state_file_never_makes_a_silent_success(project, name, remote_docker):
    """`doit run_remote` after each corruption runs the job or says why it cannot; the trial's `[1,2,3]` in
    .steps/build_image.json printed "-- up to date: dockerfile, serialize, sdist" and exited 0 without a run."""
    if name in VIA_SSH:
        assert ran_or_said_why(project.doit('run_remote', 'job=ResultJob', 'transfer=ssh')) == 'ran'
    assert ran_or_said_why(project.doit('run_remote', 'job=ResultJob')) == 'ran'
    path = project.path(f'build/ResultJob/{name}').resolve()
    original = path.read_bytes()
    for how in CORRUPTIONS:
        corrupt(path, how, original)
        outcome = project.doit('run_remote', 'job=ResultJob', check=False)
        assert ran_or_said_why(outcome) == 'ran', (how, outcome.stdout, outcome.stderr)
        assert 'wrote 10 numbers' in outcome.stdout  # the job itself ran: not a result kept from before
        if name.endswith('sqlite3'):
            assert outcome.stderr.count('cannot be read') == 1 and 'set aside as .doit.sqlite3.corrupt-' in outcome.stderr


def test_every_state_file_a_run_writes_is_one_the_test_above_corrupts(project, remote_docker):
    """A new JSON state file under build/JOB (not a run's own folder or record) joins STATE_FILES, or this fails
    naming it."""
    project.doit('run_remote', 'job=ResultJob', 'transfer=ssh')
    project.doit('run_remote', 'job=ResultJob')
    top = project.path('build/ResultJob')
    written = {str(p.relative_to(top)) for p in top.rglob('*.json') if 'runs' not in p.relative_to(top).parts}
    assert written - set(STATE_FILES) == set()


def test_a_corrupt_run_record_is_rebuilt_from_the_run_folder(project, remote_docker):
    """The trial's corrupted record made `result run_id=...` say the container was removed before it was
    collected, with result.pkl intact beside it."""
    project.doit('run_remote', 'job=ResultJob')
    run_id = max(p.stem for p in project.path('build/ResultJob/runs/remote').glob('*.json'))
    record = project.path(f'build/ResultJob/runs/remote/{run_id}.json')
    original = record.read_bytes()
    for how in CORRUPTIONS:
        corrupt(record, how, original)
        outcome = project.doit('result', 'job=ResultJob', 'where=remote', f'run_id={run_id}', check=False)
        assert ran_or_said_why(outcome) == 'ran', (how, outcome.stderr)
        assert f'the record of run {run_id}' in outcome.stderr and 'taken from its run folder' in outcome.stderr
        assert 'removed before it was collected' not in outcome.stderr
        status = project.doit('status', 'job=ResultJob', 'where=remote')
        assert re.search(rf'{run_id}\s+collected, exited 0 \(record unreadable: from its run folder\)', status.stdout)


# --- 2. a return value that cannot be kept ------------------------------------------------------------------
@pytest.mark.parametrize('job, error', [('ReturnsGenerator', "cannot pickle 'generator' object"),
                                        ('ReturnsLock', "cannot pickle '_thread.lock' object")])
@pytest.mark.parametrize('where', ['local', 'remote'])
def test_a_value_that_cannot_be_kept_is_said_and_recorded(project, where, job, error, remote_docker):
    outcome = project.doit(f'run_{where}', f'job={job}', check=False)
    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    assert f'Result: not kept: {error}' in outcome.stdout and 'Result: None' not in outcome.stdout
    assert re.search(rf'ERROR: job {job} returned a value that cannot be kept \({where}[^)]* run\): {re.escape(error)}',
                     outcome.stderr)
    assert 'TIP: return plain data' in outcome.stderr and 'Traceback' not in outcome.stderr
    run_id = max(p.stem for p in project.path(f'build/{job}/runs/{where}').glob('*.json'))
    assert json.loads(project.read(f'build/{job}/runs/{where}/{run_id}.json'))['result_error'] == error
    again = project.doit('result', f'job={job}', f'where={where}', check=False)
    assert again.returncode == 1 and f'Result: not kept: {error}' in again.stdout
    status = project.doit('status', f'job={job}', f'where={where}').stdout
    assert re.search(rf'{run_id}\s+collected, exited 1 \(return value not kept\)', status)


# --- 3. the registry cut off during a push ------------------------------------------------------------------
class CutOffRegistry:
    """A TCP proxy to the registry that cuts it off once a push has begun: the engine's first request for a
    blob, manifest or upload gets no answer, ever (its connections stay open: no error comes back)."""

    def __init__(self, upstream: str):
        host, _, port = upstream.rpartition(':')
        self.upstream = (host, int(port))
        self.server = socket.create_server(('127.0.0.1', 0))
        self.address = f'127.0.0.1:{self.server.getsockname()[1]}'
        self.cut = threading.Event()
        self.sockets, self.closed = [], False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, target, from_engine):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_engine and any(part in data for part in (b'/blobs/', b'/manifests/', b'/uploads/')):
                self.cut.set()
            if not self.cut.is_set():
                target.sendall(data)

    def close(self):
        """Every connection ends (shut down, which wakes the threads blocked on them): the engine's requests fail,
        and its uploads, which hold its few upload slots while they wait, end with them."""
        self.closed = True
        for s in [self.server, *self.sockets]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_the_registry_cut_off_during_a_push_is_one_error(project, target, docker_client):
    """The trial's registry cut off for over ~60 s during push: urllib3's ReadTimeoutError traceback, exit 2.
    The engine waits on the registry without a deadline; the Docker client gives up after its timeout."""
    registry = CutOffRegistry(target.registry)
    try:
        outcome = project.doit('push', 'job=ResultJob', f'registry={registry.address}', check=False)
    finally:
        registry.close()
    assert registry.cut.is_set()
    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    assert 'Traceback' not in outcome.stderr and outcome.stderr.count('ERROR: ') == 1
    assert f'ERROR: pushing {registry.address}/tgtest-resultjob:0.0.0 failed: the Docker engine sent nothing for ' \
           f'60 s (timeout): it waits on the registry, which does not answer' in outcome.stderr
    assert f'TIP: the registry {registry.address} is unreachable from this Docker engine' in outcome.stderr


# --- 4. settings of a wrong form: before any step --------------------------------------------------------
@pytest.mark.parametrize('setting, expected', [
    ('registry=not a registry', "registry.address = 'not a registry' is no registry address"),
    ('host=ssh://bad:port', "remote host 'ssh://bad:port' is not host, user@host or ssh://user@host:port"),
    ('remote.port=99999', 'remote.port = 99999 is no TCP port (1 to 65535)'),
    ('host=ssh://gpu-box:99999', "remote host 'ssh://gpu-box:99999': the port 99999 is not 1 to 65535"),
])
def test_a_setting_of_a_wrong_form_fails_before_any_image_is_built(project, setting, expected, remote_docker):
    outcome = project.doit('run_remote', 'job=ResultJob', setting, check=False)
    assert outcome.returncode == 2 and expected in outcome.stderr and 'Traceback' not in outcome.stderr
    assert outcome.stdout == '' and not project.path('build/ResultJob').exists()


def test_a_pipeline_toml_that_is_not_utf8_fails_before_any_image_is_built(project, remote_docker):
    """The trial's pipeline.toml that was not UTF-8: UnicodeDecodeError, exit 3."""
    project.path('pipeline.toml').write_bytes(project.path('pipeline.toml').read_bytes() + b'\n# caf\xe9\n')
    outcome = project.doit('run_remote', 'job=ResultJob', check=False)
    assert outcome.returncode == 2 and 'Traceback' not in outcome.stderr
    assert 'not UTF-8 text: byte 0xe9 cannot be read (TOML files are UTF-8)' in outcome.stderr
    assert outcome.stdout == '' and not project.path('build/ResultJob').exists()


def test_a_missing_local_mount_fails_before_any_image_is_built(project, docker_client, tmp_path):
    missing = tmp_path / 'not-there'
    outcome = project.doit('run_local', 'job=ResultJob', f'mounts={missing}:/data', check=False)
    assert outcome.returncode == 2 and f'which does not exist on this machine' in outcome.stderr
    assert outcome.stdout == '' and not project.path('build/ResultJob/image.json').exists()


def test_a_host_that_does_not_resolve_is_one_error(project, remote_docker):
    """Whether the name resolves is no form check: the early SSH login says it, before build_image when it has
    failed by then, else when run_remote takes the login (docs/troubleshooting.md)."""
    outcome = project.doit('run_remote', 'job=ResultJob', 'host=no-such-host.invalid', check=False)
    assert outcome.returncode == 1 and 'Traceback' not in outcome.stderr
    assert 'ERROR: the host name no-such-host.invalid does not resolve' in outcome.stderr
    assert outcome.stderr.count('ERROR: ') == 1
    assert 'push:ResultJob' not in outcome.stdout  # nothing was sent anywhere


# --- 5. the engine restarted under a run: an engine of this test's own ----------------------------------------
class OwnEngine:
    """A dockerd of this test only, in a network namespace of its own (its bridge and iptables apart from the
    shared engines'), with its own data-root, exec-root and socket; stopped and started by its pid."""

    def __init__(self, name: str):
        self.ns, self.root = name, STATE / name
        self.run_dir = Path('/run') / name
        self.socket = self.run_dir / 'docker.sock'
        self.url = f'unix://{self.socket}'
        self.process = None
        subprocess.run(['ip', 'netns', 'add', name], check=True)
        subprocess.run(['ip', '-n', name, 'link', 'set', 'lo', 'up'], check=True)
        self.start()
        import docker
        self.client = docker.DockerClient(base_url=self.url)

    def take(self, image_id: str) -> None:
        """The image ``image_id`` of the shared engine, loaded here (this engine has no way out to a package
        index)."""
        import docker
        source = docker.from_env().images.get(image_id)
        self.client.images.load(b''.join(source.save(named=True)))

    def start(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.root.with_suffix('.log'), 'ab')
        self.process = subprocess.Popen(
            ['nsenter', f'--net=/run/netns/{self.ns}', 'dockerd', '--data-root', str(self.root / 'docker'),
             '--exec-root', str(self.run_dir / 'exec'), '-H', self.url, '--pidfile', str(self.run_dir / 'docker.pid')],
            stdout=self.log, stderr=self.log, start_new_session=True)
        wait_for(lambda: subprocess.run(['docker', '-H', self.url, 'info'], capture_output=True).returncode == 0,
                 timeout=120, what='the test\'s own dockerd to answer')

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # as `systemctl stop docker`: it stops its containers
            self.process.wait(timeout=120)
        self.log.close()

    def remove(self):
        self.stop()
        subprocess.run(['ip', 'netns', 'delete', self.ns], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture
def own_engine(docker_client):
    made = OwnEngine(f'tg-fault-{os.getpid()}')
    try:
        yield made
    finally:
        made.remove()


def test_a_run_the_engine_restarted_under_says_so(project, own_engine):
    """The trial restarted the remote engine under a running job: `result` said `killed by signal 15` and
    nothing said the engine restarted. The detection is the engine's (its bridge network is made anew when it
    starts), the same over SSH; this engine is the test's own, so it is reached as the local one."""
    env = {'DOCKER_HOST': own_engine.url}
    project.doit('build_image', 'job=Counter')  # on the shared engine, which reaches the package index
    own_engine.take(json.loads(project.read('build/Counter/image.json'))['image_id'])
    attached = project.popen('run_local', 'job=Counter', HOLD, env=env)
    found = wait_for(lambda: running_containers(project, 'Counter', own_engine.client) or attached.poll() is not None,
                     timeout=300, what='the run on the own engine')
    assert attached.poll() is None, attached.communicate()
    container = found[0]
    run_id = container.labels['tg_pipeline.run_id']
    wait_for(lambda: project.path(f'build/Counter/runs/local/{run_id}.out').exists(), what='doit following it')
    own_engine.stop()
    stdout, stderr = attached.communicate(timeout=300)
    assert attached.returncode != 0 and 'Traceback' not in stderr, stderr
    assert f'ERROR: the Docker engine of local stopped answering during run {run_id}' in stderr
    own_engine.start()
    outcome = project.doit('result', 'job=Counter', f'run_id={run_id}', env=env, check=False)
    assert outcome.returncode == 1 and 'Traceback' not in outcome.stderr
    assert 'ERROR: job Counter was killed by signal 15 (local run): the Docker engine stopped under it, and ' \
           'started again at ' in outcome.stderr
    record = json.loads(project.read(f'build/Counter/runs/local/{run_id}.json'))
    assert record['engine_restarted'] and record['signal'] == 15
    status = project.doit('status', 'job=Counter', env=env).stdout
    assert re.search(rf'{run_id}\s+collected, exited 143 \(the engine restarted under it\)', status)


# --- 6. the doit process killed while its job ran ------------------------------------------------------------
@pytest.mark.parametrize('where', ['local', 'remote'])
def test_a_run_whose_doit_process_was_killed_waits_safely_to_be_collected(project, where, docker_client,
                                                                          remote_docker):
    client = engine(where, docker_client, remote_docker)
    project.doit('build_image' if where == 'local' else 'push', 'job=Counter')
    attached = project.popen(f'run_{where}', 'job=Counter', HOLD)
    container = wait_for(lambda: running_containers(project, 'Counter', client), timeout=180, what='the run')[0]
    run_id = container.labels['tg_pipeline.run_id']
    wait_for(lambda: project.path(f'build/Counter/runs/{where}/{run_id}.out').exists(), what='doit following it')
    attached.kill()  # kill -9
    attached.communicate()
    assert release(container) == 1
    wait_for(lambda: client.containers.get(container.id).status == 'exited', what='the run to end')
    status = project.doit('status', 'job=Counter', f'where={where}').stdout
    assert f'Bring them all: doit cleanup where={where} days=0' in status
    assert f'the doit process that followed {run_id} ended before the run did' in status
    assert 'their output, return value and logs are safe there until brought here' in status
    cleanup = project.doit('cleanup', f'where={where}', 'days=0')  # the command status named
    assert f'removed run {run_id}' in cleanup.stdout
    assert ours(client, 'Counter', project) == []
    outcome = project.doit('result', 'job=Counter', f'where={where}', f'run_id={run_id}')
    assert 'Result: 16' in outcome.stdout


def test_cleanup_says_what_it_left_for_being_newer(project, docker_client):
    run_id = run_id_of(project.doit('run_local', 'job=ResultJob', 'detach=1').stdout)
    wait_for(lambda: [c for c in ours(docker_client, 'ResultJob', project) if c.status == 'exited'], what='its end')
    cleanup = project.doit('cleanup')
    assert '1 ended run(s) newer than that stay on local (their data is safe there); bring them here too: ' \
           'doit cleanup where=local days=0' in cleanup.stdout
    assert RESULT in project.doit('result', 'job=ResultJob', f'run_id={run_id}').stdout


# --- 7. secret_env: the job sees it, nothing shows it ---------------------------------------------------------
def everything_about(client, container) -> str:
    """What the engine shows of a container and its image to anyone in its group."""
    image = client.images.get(container.image.id)
    history = json.dumps(client.api.history(image.id))
    return json.dumps(container.attrs) + json.dumps(image.attrs) + history


def files_containing(folder: Path, value: bytes) -> list[str]:
    return [str(p) for p in folder.rglob('*') if p.is_file() and value in p.read_bytes()]


@pytest.mark.parametrize('where', ['local', 'remote'])
def test_a_secret_reaches_the_job_and_nothing_else(project, where, docker_client, remote_docker):
    client = engine(where, docker_client, remote_docker)
    value = 'tg-secret-' + random_secrets.token_hex(16)
    env = {'SECRET_TOKEN': value}
    started = project.doit(f'run_{where}', 'job=UsesSecret', 'detach=1', HOLD, 'jobs.UsesSecret.args=["SECRET_TOKEN", 1]',
                           env=env)
    run_id = run_id_of(started.stdout)
    container = wait_for(lambda: running_containers(project, 'UsesSecret', client), what='the run')[0]
    shown = everything_about(client, container)
    assert value not in shown and 'TG_PIPELINE_SECRETS=SECRET_TOKEN' in shown  # the name only
    assert value.encode() not in b''.join(container.logs(stream=False, stdout=True, stderr=True).splitlines())
    assert release(container) == 1
    outcome = project.doit('result', 'job=UsesSecret', f'where={where}', f'run_id={run_id}', env=env)
    assert f"'sha256': '{hashlib.sha256(value.encode()).hexdigest()}'" in outcome.stdout  # the job saw it
    assert value not in outcome.stdout + outcome.stderr
    assert files_containing(project.path('build'), value.encode()) == []  # no record, log, run folder, build file
    assert value not in started.stdout + started.stderr


def test_a_secret_in_a_swarm_run_is_a_docker_secret_of_that_run_only(project, swarm, docker_client):
    value = 'tg-secret-' + random_secrets.token_hex(16)
    outcome = project.doit('run_swarm', 'job=UsesSecret', env={'SECRET_TOKEN': value})
    assert f"'sha256': '{hashlib.sha256(value.encode()).hexdigest()}'" in outcome.stdout
    run_id = re.search(r'Swarm run (\S+):', outcome.stdout).group(1)
    assert docker_client.api.secrets(filters={'label': f'tg_pipeline.run_id={run_id}'}) == []  # removed with it
    assert files_containing(project.path('build'), value.encode()) == []
