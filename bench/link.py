"""The bandwidth-limited rows (j).

(j): the first remote run after adding a ~57 MB dependency (scipy 1.14.1 + numpy 2.1.3 wheels,
job BenchDeps, added to the project copy's pipeline.toml), with what this host sends to the remote shaped to
20 Mbit/s by scripts/shape_link.sh (an htb token bucket on the veth; the remote's own downloads from
the package index, forwarded through this host, are not shaped). Four rows: build_on = local or
remote, transfer over the registry or ssh. Before each run both engines lose every image of the job
(and so its dependency layer); pip runs with --no-cache-dir in the build, so every run is a cold
"first run after adding the dependency": the local rows include the local build (its download from
the index is not on the shaped link), the remote rows the remote engine's build.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from target import TARGET  # tests/target.py (bench.py puts tests/ on the path)

REPO = Path(__file__).resolve().parent.parent
SHAPE = REPO / 'scripts' / 'shape_link.sh'
RATE = '20mbit'
JOB = 'BenchDeps'
IMAGE_NAME = 'bench-benchdeps'  # image_prefix + package (the job's name, lower case)
REMOTE_SOCKET = TARGET.remote_docker
# added to the project copy's pipeline.toml when these rows start, so that rows (a) to (i) run the project as it was
JOB_TABLE = f'''
[jobs.{JOB}]   # the small job with a large dependency: cp311 manylinux x86_64 wheels 41.2 MB + 16.3 MB
factory = "jobs.bench_job:BenchJob"
args = [3]
dependencies = ["scipy==1.14.1", "numpy==2.1.3"]
'''
FIRST_RUN = f'(j) {RATE}, first run, +57 MB deps'
ROWS = (
    ('j_link_local_build', f'{FIRST_RUN}: build local, registry', ()),
    ('j_link_local_build_ssh', f'{FIRST_RUN}: build local, ssh', ('transfer=ssh',)),
    ('j_link_remote_build', f'{FIRST_RUN}: build_on=remote, registry', ('build_on=remote',)),
    ('j_link_remote_build_ssh', f'{FIRST_RUN}: build_on=remote, ssh', ('build_on=remote', 'transfer=ssh')),
)


def shape(rate: str | None) -> None:
    """Shape the link to the remote at ``rate`` (e.g. 20mbit), or remove the shaping (None)."""
    subprocess.run(['bash', str(SHAPE), *(('on', rate) if rate else ('off',))], check=True, capture_output=True)


def _docker(engine: list[str], *args) -> str:
    return subprocess.run(['docker', *engine, *args], capture_output=True, text=True, check=True).stdout


def drop_job_images(engine: list[str]) -> None:
    """Remove the job's ended containers and every image of it on one engine (by its label, which every
    step after the dependency layer carries, and by name): the dependency layer under them goes too."""
    ended = _docker(engine, 'ps', '-aq', '--filter', f'label=tg_pipeline.job={JOB}', '--filter', 'status=exited')
    if ended.split():
        _docker(engine, 'rm', *ended.split())
    ids = set(_docker(engine, 'images', '-aq', '--filter', f'label=tg_pipeline.job={JOB}').split())
    for line in _docker(engine, 'images', '--format', '{{.ID}} {{.Repository}}').splitlines():
        image_id, name = line.split(' ', 1)
        if name.rpartition('/')[2].startswith(IMAGE_NAME):
            ids.add(image_id)
    if ids:
        subprocess.run(['docker', *engine, 'rmi', '-f', *sorted(ids)], capture_output=True)


def dependency_layer_bytes() -> int | None:
    """Uncompressed size of the local image's dependency layer (its `pip install` step), if there is one."""
    found = subprocess.run(['docker', 'history', '--no-trunc', '--human=false', '--format', '{{.Size}} {{.CreatedBy}}',
                            IMAGE_NAME + ':0.0.0'], capture_output=True, text=True)
    for line in found.stdout.splitlines():
        size, _, step = line.partition(' ')
        if 'pip install' in step:
            return int(size)
    return None


def link_rows(bench, runs: int) -> None:
    """Measure the (j) rows into ``bench.rows``; the shaping is on only while they run."""
    def cold() -> None:
        drop_job_images([])
        drop_job_images(['-H', REMOTE_SOCKET])

    config = bench.project / 'pipeline.toml'
    if f'[jobs.{JOB}]' not in config.read_text():
        config.write_text(config.read_text() + JOB_TABLE)
    shape(None)
    try:
        shape(RATE)
        for key, label, extra in ROWS:
            try:
                bench.measure(key, label, lambda: bench.doit('run_remote', f'job={JOB}', *extra)[0],
                              before=cold, bytes_too=True, runs=runs)
            except SystemExit as failed:  # a step failed (e.g. build_on=remote where it is not there yet)
                lines = [line for line in str(failed).splitlines() if line.strip()]
                said = [line for line in lines if line.startswith('ERROR')] or lines[-1:]
                bench.rows[key] = {'label': label, 'error': said[-1][:200]}
                print(f'  {label}: FAILED {bench.rows[key]["error"]}', file=sys.stderr, flush=True)
            if key == 'j_link_local_build' and 'median_s' in bench.rows[key]:
                bench.rows[key]['dependency_layer_bytes'] = dependency_layer_bytes()
    finally:
        shape(None)
    for transfer in ('', '_ssh'):
        local, remote = (bench.rows.get(f'j_link_{where}_build{transfer}', {}) for where in ('local', 'remote'))
        if 'median_s' in local and 'median_s' in remote:
            remote['note'] = f'{remote["median_s"] / local["median_s"]:.2f}x the local build'
