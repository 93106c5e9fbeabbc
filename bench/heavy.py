"""Rows (o): the edit loop of a job that imports scikit-learn and scipy at its module's top (issue 22).

A code edit, then ``run_local`` and ``run_remote`` (registry, then ssh transfer) of HeavyJob, beside the same rows
of the light BenchJob ((c), (d)); and the container's own import of the job's module (``MODULE.jobs.heavy_job``: its
``import scipy`` and ``import sklearn``, after the job package itself), timed inside a container of the HeavyJob
image on each engine (the local one, the remote's), in the same bench run. What a heavy job's edit costs
beyond that import is what tg_pipeline adds for the job's weight; the target (issue 22): at most 0.1 s more than
the light job's edit.

The import is timed inside the container (``time.perf_counter`` around the import), not as a whole ``docker run``:
the container's start is in both jobs' rows alike.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

# the job's module, imported as the entry point imports it (its package first, untimed: the light job has it too):
# what its code imports (scipy, then sklearn), in its own order
IMPORT = ('import importlib, time; importlib.import_module("{module}"); t = time.perf_counter(); '
          'importlib.import_module("{module}.jobs.heavy_job"); print(time.perf_counter() - t)')
MARGIN_S = 0.1
ONLY = '--heavy-only'  # bench.py's option: the light job's rows (c), (d) and these alone
# (heavy row, the light job's row, the import row of the engine it runs on)
PAIRS = (('o_heavy_local_code_edit', 'c_local_code_edit', 'o_import_local'),
         ('o_heavy_remote_code_edit', 'd_remote_code_edit', 'o_import_remote'),
         ('o_heavy_remote_code_edit_ssh', 'd_remote_code_edit_ssh', 'o_import_remote'))


def _image(bench) -> str:
    record = json.loads((bench.project / 'build' / 'HeavyJob' / 'image.json').read_text())
    return record['image_id']


def _module(engine: list[str], image: str) -> str:
    """The job package's module (``heavyjob__0_0_0``), from the image's label."""
    label = '{{index .Config.Labels "tg_pipeline.module"}}'
    return subprocess.run(['docker', *engine, 'image', 'inspect', '--format', label, image],
                          capture_output=True, text=True, check=True).stdout.strip()


def _import_time(engine: list[str], image: str) -> float:
    """The import inside a container of ``image`` with the job's limits ([run] of the bench project)."""
    limits = ['--cpus', '1', '--memory', '512m']
    code = IMPORT.format(module=_module(engine, image))
    out = subprocess.run(['docker', *engine, 'run', '--rm', *limits, image, 'python', '-c', code],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _run(bench, *args) -> float:
    """A doit command of the bench project, timed (not through bench.doit: the heavy job's first line comes after
    its import, which is no start overhead of the entry point's, row (h))."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, '-m', 'doit', *args], cwd=bench.project, env=bench.env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f'benchmark step failed: doit {" ".join(args)}\n{done.stdout}\n{done.stderr}')
    return elapsed


def light_rows(bench) -> None:
    """BenchJob's rows (c) and (d), as bench.py's run_main measures them (for ``--heavy-only``)."""
    bench.doit('run_local', 'job=BenchJob')  # warm up: first build
    bench.measure('c_local_code_edit', '(c) local after a code-only edit',
                  lambda: bench.doit('run_local', 'job=BenchJob')[0], before=bench.edit_code)
    bench.doit('run_remote', 'job=BenchJob')  # warm up: registry and remote have the dependency layer
    bench.measure('d_remote_code_edit', '(d) remote after a code-only edit (registry)',
                  lambda: bench.doit('run_remote', 'job=BenchJob')[0], before=bench.edit_code, bytes_too=True)
    bench.measure('d_remote_code_edit_ssh', '(d) remote after a code-only edit (ssh transfer)',
                  lambda: bench.doit('run_remote', 'job=BenchJob', 'transfer=ssh')[0], before=bench.edit_code,
                  bytes_too=True)


def heavy_rows(bench, remote_socket: str) -> None:
    """The rows (o) into ``bench.rows``, beside the light job's rows (c) and (d) of the same run (measured here
    first when the run has none)."""
    if 'c_local_code_edit' not in bench.rows:
        light_rows(bench)
    _run(bench, 'run_local', 'job=HeavyJob')  # warm up: the dependency image (scikit-learn, scipy) built once
    bench.measure('o_heavy_local_code_edit', '(o) heavy job: local after a code-only edit',
                  lambda: _run(bench, 'run_local', 'job=HeavyJob'), before=bench.edit_code)
    image = _image(bench)
    bench.measure('o_import_local', '(o) its container\'s own import of the job module (local)',
                  lambda: _import_time([], image))
    _run(bench, 'run_remote', 'job=HeavyJob')  # warm up: the registry and the remote have its dependency layer
    bench.measure('o_heavy_remote_code_edit', '(o) heavy job: remote after a code-only edit (registry)',
                  lambda: _run(bench, 'run_remote', 'job=HeavyJob'), before=bench.edit_code, bytes_too=True)
    bench.measure('o_heavy_remote_code_edit_ssh', '(o) heavy job: remote after a code-only edit (ssh)',
                  lambda: _run(bench, 'run_remote', 'job=HeavyJob', 'transfer=ssh'), before=bench.edit_code,
                  bytes_too=True)
    bench.measure('o_import_remote', '(o) its container\'s own import of the job module (remote)',
                  lambda: _import_time(['-H', remote_socket], _image(bench)))


def heavy_targets(rows: dict) -> list[dict]:
    """Per pair: heavy edit - import <= light edit + MARGIN_S."""
    found = []
    for heavy, light, imported in PAIRS:
        if not all(key in rows and 'median_s' in rows[key] for key in (heavy, light, imported)):
            continue
        beyond = rows[heavy]['median_s'] - rows[imported]['median_s']
        limit = rows[light]['median_s'] + MARGIN_S
        found.append({'heavy': heavy, 'light': light, 'import': imported, 'heavy_s': rows[heavy]['median_s'],
                      'import_s': rows[imported]['median_s'], 'heavy_minus_import_s': beyond,
                      'light_s': rows[light]['median_s'], 'limit_s': limit, 'met': beyond <= limit})
    return found


def heavy_table(found: list[dict]) -> str:
    lines = [f'{"issue 22: heavy job edit - its import <= light job edit + 0.1 s":62} {"heavy":>7} {"import":>7} '
             f'{"h - i":>7} {"light":>7} {"limit":>7}  met', '-' * 110]
    for row in found:
        lines.append(f'{row["heavy"]:62} {row["heavy_s"]:7.3f} {row["import_s"]:7.3f} '
                     f'{row["heavy_minus_import_s"]:7.3f} {row["light_s"]:7.3f} {row["limit_s"]:7.3f}  '
                     f'{"yes" if row["met"] else "NO"}')
    return '\n'.join(lines)
