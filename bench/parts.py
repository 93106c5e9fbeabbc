"""Rows (k): what a run pays on this stack whatever tg_pipeline's own code does (bench/targets.py subtracts them
from each path's time: what is left is ours).

Each part is measured by itself, median of the bench's runs:
- a Python process that imports doit (the `doit` command, before it reads dodo.py), and the Docker SDK,
  and paramiko + fabric (the SSH stack), as `python -c` commands;
- on an engine, through the Docker SDK in this process (no process start): create + start + wait + remove of
  the bench job's image with its own command (the in-container entry point included); the archive request
  that brings a run folder back (Docker 20.10 re-executes dockerd for it); `docker load` of the job image's
  config and code layer (the image removed before each);
- the SSH login (the OpenSSH master of a shared connection) plus the first Docker request over it, and a Docker
  connection on a shared connection that is open (the engine's socket it forwards) plus that request
  (tg_pipeline.ssh.openssh, this process);
- the registry transfer of a code edit: the local engine's push of an image whose top layer is new (the layers
  below it already in the registry), and the remote engine's pull of it by digest (the layers below it already
  there).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tg_pipeline.runtime import protocol

SDK = 'from tg_pipeline.compat.docker import import_docker_without_paramiko as sdk; sdk()'  # as a run imports it
IMPORTS = {
    'k_python_doit': ('(k) a Python process importing doit', 'import doit.doit_cmd'),
    'k_python_doit_docker': ('(k) ... and the Docker SDK', f'import doit.doit_cmd; {SDK}'),
    'k_python_doit_docker_ssh': ('(k) ... and paramiko + fabric', f'import doit.doit_cmd; {SDK}; import fabric'),
}


RUN_ENV = {protocol.ENV_RUN_DIR: protocol.RUN_DIR, protocol.ENV_RUN_ID: 'bench-parts'}  # a run's own


def _median(step, runs: int) -> tuple[float, list[float]]:
    times = [step() for _ in range(runs)]
    return statistics.median(times), times


def _timed_import(code: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', code], check=True, env=env)
    return time.perf_counter() - start


def _engine_run(client, image_id: str) -> tuple[float, float]:
    """(create + start + wait + remove, the run folder's archive request) of one container of ``image_id``."""
    started = time.perf_counter()
    container = client.api.create_container(image_id, environment={'EXAMPLE_VARIABLE': 'x', **RUN_ENV})
    client.api.start(container)
    client.api.wait(container)
    ended = time.perf_counter()
    stream, _ = client.api.get_archive(container, protocol.RUN_DIR)
    for _ in stream:
        pass
    archived = time.perf_counter()
    client.api.remove_container(container)
    return (ended - started) + (time.perf_counter() - archived), archived - ended


def _load(client, project: Path) -> float:
    """``docker load`` of a code edit: the config and a new top code layer (a small file changed) on the layers the
    engine has (the job image stays); the new image removed afterwards."""
    elapsed, image_id = _load_edited(client, project)
    client.api.remove_image(image_id, force=True)
    return elapsed


def _load_edited(client, project: Path) -> tuple[float, str]:
    """(the time of the load, the image id) of the bench job's image with a new top code layer."""
    import dataclasses
    import hashlib
    import io
    import os
    import tarfile
    import tempfile
    from tg_pipeline.image.compose import load_archive
    from tg_pipeline.image.job_image import recorded_composed
    from tg_pipeline.paths import JobPaths
    image = recorded_composed(JobPaths(project / 'build', 'BenchJob'))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w') as tar:
        data = os.urandom(1500).hex().encode()
        info = tarfile.TarInfo('opt/tg_pipeline/bench_parts.py')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tempfile.NamedTemporaryFile(suffix='.tar') as layer:
        layer.write(raw.getvalue())
        layer.flush()
        diff_id = 'sha256:' + hashlib.sha256(raw.getvalue()).hexdigest()
        config = json.loads(image.config)
        config['rootfs']['diff_ids'][-1] = diff_id
        edited = dataclasses.replace(image, config=json.dumps(config).encode(), layer=Path(layer.name),
                                     diff_id=diff_id, lower=())
        archive = load_archive(edited, '')
        start = time.perf_counter()
        for _ in client.api.load_image(archive):
            pass
        elapsed = time.perf_counter() - start
    return elapsed, edited.image_id


def _push_pull(local, remote, project: Path, registry: str) -> tuple[float, float]:
    """(push, pull) of a code edit through the registry: the local engine pushes the image with a new top layer
    (the ones below it are in the registry from the bench's runs), the remote engine pulls it by digest."""
    _, image_id = _load_edited(local, project)
    name = json.loads((project / 'build' / 'BenchJob' / 'image.json').read_text())['tag'].rpartition(':')[0]
    repository, tag = f'{registry}/{name}', f'bench-parts-{image_id[7:19]}'  # the job's repository, as a run's push
    local.api.tag(image_id, repository, tag)
    start = time.perf_counter()
    answers = list(local.api.push(repository, tag, stream=True, decode=True))
    pushed = time.perf_counter() - start
    digest = next((a['aux']['Digest'] for a in answers if 'Digest' in (a.get('aux') or {})), None)
    if digest is None:
        raise RuntimeError(f'the push of {repository}:{tag} said no digest: {answers[-3:]}')
    start = time.perf_counter()
    for _ in remote.api.pull(repository, digest, stream=True, decode=True):
        pass
    pulled = time.perf_counter() - start
    remote.api.remove_image(f'{repository}@{digest}', force=True)
    local.api.remove_image(image_id, force=True)
    return pushed, pulled


def _remote(project: str):
    from tg_pipeline.ssh.openssh import SharedRemote
    from tg_pipeline.ssh.settings import RemoteTarget
    from target import TARGET  # tests/target.py (bench.py puts tests/ on the path)
    return SharedRemote(RemoteTarget(TARGET.remote, project=project))


def _login() -> float:
    """The first command after the shared connection ended: the OpenSSH login (its master) + the first Docker
    request over it."""
    _remote('bench-parts-login').connection.exit()
    start = time.perf_counter()
    remote = _remote('bench-parts-login')
    remote.docker  # noqa: B018 (the first request over the new connection)
    elapsed = time.perf_counter() - start
    remote.close()
    return elapsed


def _channel() -> float:
    """A command while the shared connection is open: a Docker connection on it (through the engine's socket it
    forwards, made by the command before) + the first Docker request."""
    _remote('bench-parts-channel').close()  # the master is there
    start = time.perf_counter()
    remote = _remote('bench-parts-channel')
    remote.docker  # noqa: B018
    elapsed = time.perf_counter() - start
    remote.close()
    return elapsed


def parts_rows(bench, remote_socket: str) -> None:
    """The (k) rows, into ``bench.rows``; needs the bench job built here and run on the remote once."""
    import docker
    runs = bench.runs
    for key, (label, code) in IMPORTS.items():
        median, times = _median(lambda: _timed_import(code, bench.env), runs)
        bench.rows[key] = {'label': label, 'median_s': median, 'runs_s': times}
    image_id = json.loads((bench.project / 'build' / 'BenchJob' / 'image.json').read_text())['image_id']
    for where, client in (('local', docker.from_env()), ('remote', docker.DockerClient(base_url=remote_socket))):
        pairs = [_engine_run(client, image_id) for _ in range(runs)]
        bench.rows[f'k_engine_run_{where}'] = {
            'label': f'(k) {where} engine: create+start+wait+remove, job image', 'median_s':
            statistics.median(p[0] for p in pairs), 'runs_s': [p[0] for p in pairs]}
        bench.rows[f'k_archive_{where}'] = {
            'label': f'(k) {where} engine: the run folder archive request', 'median_s':
            statistics.median(p[1] for p in pairs), 'runs_s': [p[1] for p in pairs]}
        median, times = _median(lambda: _load(client, bench.project), runs)
        bench.rows[f'k_load_{where}'] = {'label': f'(k) {where} engine: docker load of config + code layer',
                                         'median_s': median, 'runs_s': times}
    from target import TARGET
    local, remote = docker.from_env(), docker.DockerClient(base_url=remote_socket)
    pairs = [_push_pull(local, remote, bench.project, TARGET.registry) for _ in range(runs)]
    for key, label, index in (('k_push', '(k) registry: the local engine pushes a code edit (one new layer)', 0),
                              ('k_pull_remote', '(k) remote engine: its pull of that image by digest', 1)):
        bench.rows[key] = {'label': label, 'median_s': statistics.median(p[index] for p in pairs),
                           'runs_s': [p[index] for p in pairs]}
    median, times = _median(_login, runs)
    bench.rows['k_ssh_login'] = {'label': '(k) SSH login (OpenSSH master) + first Docker request over it',
                                 'median_s': median, 'runs_s': times}
    median, times = _median(_channel, runs)
    bench.rows['k_ssh_channel'] = {'label': '(k) the open shared connection: a Docker connection + first request',
                                   'median_s': median, 'runs_s': times}
