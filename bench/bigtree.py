"""Rows (l) and (m): remote commands on the shared SSH connection, and a project with 2,000 small modules.

(l): `doit status|logs|result job=BenchJob where=remote` while the shared connection (OpenSSH ControlMaster) is
open, and `status` as the first command after it ended (the master ended before each run: one login).
(m): the same project with 2,000 modules of ~3.4 kB each (6.8 MB of Python, 7.9 MB on disk) added under
jobs/big/: nothing changed, a one-file code edit (the same file as in (c) and (d)) locally, and remotely with the
registry and with transfer=ssh (bytes counted as in (d)).
"""
from __future__ import annotations

import gzip
import random
import subprocess
import sys
from pathlib import Path

from target import TARGET  # tests/target.py (bench.py puts tests/ on the path)

REPO = Path(__file__).resolve().parent.parent
REMOTE = TARGET.remote
MODULES = 2000


def end_master(project: Path) -> None:
    """End the project's shared SSH connection to the remote (the next command logs in)."""
    sys.path.insert(0, str(REPO))
    from tg_pipeline import config
    from tg_pipeline.ssh.openssh import OpenSSH
    from tg_pipeline.ssh.settings import RemoteTarget
    target = RemoteTarget(REMOTE, project=config.load(project / 'pipeline.toml', environ={}).project)
    OpenSSH(target, target.settings()).exit()


def remote_command_rows(bench) -> None:
    """(l): lifecycle commands on the remote over the shared connection, warm, and the first after it ended."""
    bench.doit('run_remote', 'job=BenchJob', 'transfer=ssh')  # a run there; the master is open afterwards
    for command in ('status', 'logs', 'result'):
        bench.measure(f'l_{command}_remote', f'(l) doit {command} where=remote, shared connection open',
                      lambda command=command: bench.doit(command, 'job=BenchJob', 'where=remote')[0], paired='remote')
    bench.measure('l_status_remote_cold', '(l) doit status where=remote, first after the connection ended',
                  lambda: bench.doit('status', 'job=BenchJob', 'where=remote')[0],
                  before=lambda: end_master(bench.project), paired='remote')


def add_tree(project: Path) -> int:
    """2,000 modules under jobs/big/ (deterministic contents); their bytes."""
    folder = project / 'jobs' / 'big'
    folder.mkdir(exist_ok=True)
    (folder / '__init__.py').write_text('')
    rnd, total = random.Random(24), 0
    for i in range(MODULES):
        lines = [f'"""Module {i} of the big tree."""', '']
        for f in range(40):
            lines.append(f'def f{f}_{i}(x):\n    return x * {rnd.randint(1, 10 ** 6)} + {rnd.randint(1, 10 ** 6)}'
                         f'  # {rnd.getrandbits(128):032x}\n')
        text = '\n'.join(lines)
        (folder / f'mod_{i:04d}.py').write_text(text)
        total += len(text)
    return total


def edited_file_gz(project: Path) -> int:
    """The compressed size of the file the edits change."""
    return len(gzip.compress((project / 'jobs' / 'helper.py').read_bytes(), 6))


def big_tree_rows(bench) -> None:
    """(m): the project with 2,000 more modules: nothing changed, a one-file edit, here and on the remote."""
    size = add_tree(bench.project)
    label = f'(m) {MODULES} modules ({size / 1e6:.1f} MB):'
    bench.doit('run_local', 'job=BenchJob')  # the new tree: a new base code layer
    bench.measure('m_big_local_unchanged', f'{label} local, nothing changed',
                  lambda: bench.doit('run_local', 'job=BenchJob')[0], paired='local')
    bench.measure('m_big_local_code_edit', f'{label} local, one-file edit',
                  lambda: bench.doit('run_local', 'job=BenchJob')[0], before=bench.edit_code, paired='local')
    bench.doit('run_remote', 'job=BenchJob')  # the registry and the remote have the new base
    bench.doit('run_remote', 'job=BenchJob', 'transfer=ssh')
    for key, extra in (('m_big_remote_code_edit', ()), ('m_big_remote_code_edit_ssh', ('transfer=ssh',))):
        how = 'registry' if not extra else 'ssh transfer'
        bench.measure(key, f'{label} remote, one-file edit ({how})',
                      lambda extra=extra: bench.doit('run_remote', 'job=BenchJob', *extra)[0], before=bench.edit_code,
                      bytes_too=True, paired='remote')
        bench.rows[key]['edited_file_gz_bytes'] = edited_file_gz(bench.project)
    found = subprocess.run(['du', '-sb', str(bench.project / 'jobs' / 'big')], capture_output=True, text=True)
    bench.rows['m_big_local_code_edit']['note'] = f'tree on disk {found.stdout.split()[0]} bytes'
