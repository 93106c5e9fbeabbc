"""Rows (n) of issue 21: sweeps on one host. The same 16 small jobs (BenchSweep: BenchJob for n = 0..15) as one
sweep with ``doit run_remote`` at most 4 at a time (each variant its own container on the remote, from one image,
one SSH login, one build check), against 16 sequential ``doit run_remote`` runs of BenchJob (each a doit process,
an SSH login, a container); total and per job, and what the sweep's per-variant overhead is against a lone run.
The remote of the bench is no GPU box here: CPU jobs (the GPU path adds one nvidia-smi call and a lock per start).
"""
from __future__ import annotations

SWEEP = ('run_remote', 'job=BenchSweep', 'max_concurrent=4')


def sweep_rows(bench) -> None:
    """Rows (n), measured in ``bench`` (:class:`bench.Bench`): same image, same remote, same run."""
    bench.doit(*SWEEP)  # warm up: the image built and on the remote
    bench.doit('run_remote', 'job=BenchJob')
    bench.measure('n_remote_sweep_16', '(n) 16 small jobs: one run_remote sweep, max_concurrent 4',
                  lambda: bench.doit(*SWEEP)[0])
    bench.measure('n_remote_sequential_16', '(n) 16 small jobs: 16 sequential doit run_remote',
                  lambda: sum(bench.doit('run_remote', 'job=BenchJob')[0] for _ in range(16)))
    sweep, sequential = (bench.rows[k]['median_s'] for k in ('n_remote_sweep_16', 'n_remote_sequential_16'))
    bench.rows['n_remote_sweep_16']['note'] = (f'{sweep / 16:.3f} s per job; x{sequential / sweep:.1f} faster than '
                                               f'sequential')
    bench.rows['n_remote_sequential_16']['note'] = f'{sequential / 16:.3f} s per job'
