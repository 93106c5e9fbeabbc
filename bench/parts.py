"""Rows (k): what a run pays on this stack whatever tg_pipeline's own code does, and the best ratio to the floor
that leaves for issue 15's speed targets.

Each part is measured by itself, median of the bench's runs:
- a Python process that imports doit (the `doit` command, before it reads dodo.py), and the Docker SDK,
  and paramiko + fabric (the SSH stack), as `python -c` commands;
- on an engine, through the Docker SDK in this process (no process start): create + start + wait + remove of
  the bench job's image with its own command (the in-container entry point included); the archive request
  that brings a run folder back (Docker 20.10 re-executes dockerd for it); `docker load` of the job image's
  config and code layer (the image removed before each);
- the SSH login plus the first Docker request over it (tg_pipeline.ssh, this process).

A lower bound adds the parts a kind of run cannot avoid; its ratio to the floor is the best any code on these
dependencies, this engine and this way of bringing results back could reach.
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
    """``docker load`` of the job image's config and code layer, the image removed first (its dependency
    image stays)."""
    from tg_pipeline.image.compose import load_archive
    from tg_pipeline.image.job_image import recorded_composed
    from tg_pipeline.paths import JobPaths
    paths = JobPaths(project / 'build', 'BenchJob')
    image = recorded_composed(paths)
    data = load_archive(image, 'bench-parts:load')
    client.api.remove_image(image.image_id, force=True)
    start = time.perf_counter()
    for _ in client.api.load_image(data):
        pass
    return time.perf_counter() - start


def _login() -> float:
    from tg_pipeline.ssh.connection import Remote, RemoteTarget
    start = time.perf_counter()
    with Remote(RemoteTarget('tg-remote')) as remote:
        remote.docker  # noqa: B018 (the first request over the new connection)
        return time.perf_counter() - start


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
    median, times = _median(_login, runs)
    bench.rows['k_ssh_login'] = {'label': '(k) SSH login + first Docker request over it', 'median_s': median,
                                 'runs_s': times}


def _sum(rows: dict, keys: list[str]) -> float | None:
    values = [rows.get(k, {}).get('median_s') for k in keys]
    return None if None in values else sum(values)


# target -> (its row, the floor row, the limit, the parts it cannot avoid)
BOUNDS = {
    'local no-change': ('b_local_unchanged', 'a_floor_local', 1.4,
                        ['k_python_doit_docker', 'k_engine_run_local', 'k_archive_local']),
    'local code edit': ('c_local_code_edit', 'a_floor_local', 1.6,
                        ['k_python_doit_docker', 'k_load_local', 'k_engine_run_local', 'k_archive_local']),
    'remote code edit (ssh)': ('d_remote_code_edit_ssh', 'a_floor_remote', 1.6,
                               ['k_python_doit_docker_ssh', 'k_ssh_login', 'k_load_remote', 'k_engine_run_remote',
                                'k_archive_remote']),
}


def bounds_table(rows: dict) -> str:
    """For each speed target: the sum of the parts that run cannot avoid, its ratio to the floor, the limit."""
    lines = [f'{"lower bound (k): the parts a run cannot avoid":52} {"sum":>8} {"x floor":>8} {"limit":>6}'
             f' {"measured":>9}', '-' * 110]
    for name, (row, floor_row, limit, keys) in BOUNDS.items():
        total, floor = _sum(rows, keys), rows.get(floor_row, {}).get('median_s')
        measured = rows.get(row, {}).get('median_s')
        if total is None or not floor:
            lines.append(f'{name:52} {"-":>8}')
            continue
        shown = f'{measured / floor:.2f}x' if measured else '-'
        lines.append(f'{name:52} {total:7.3f}s {total / floor:7.2f}x {limit:5.1f}x {shown:>9}   = '
                     + ' + '.join(f'{rows[k]["median_s"]:.3f}' for k in keys))
    return '\n'.join(lines)
