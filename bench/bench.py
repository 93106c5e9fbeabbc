"""Benchmark: tg_pipeline against the bare `docker run` floor and a naive full rebuild.

Run it with `bash bench/run.sh` (sets up the engine, the simulated remote and the registry first).
Prints a table of medians over --runs runs (--link-runs for the slow 20 Mbit/s rows of link.py), then
issue 24's targets evaluated from those figures (bench/targets.py) and our own time above the stack's parts (k)
for each path, and writes them to bench/results/latest.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))  # tests/target.py: the remote, registry and link the tests use, ours too
from target import TARGET, fill  # noqa: E402
import bigtree  # noqa: E402 (bench/, beside this file)
import heavy  # noqa: E402
import link  # noqa: E402
import parts  # noqa: E402
import targets  # noqa: E402
import sweep  # noqa: E402
BASE = os.environ.get('TG_PIPELINE_BASE_IMAGE') or 'python:%d.%d-slim' % sys.version_info[:2]
REMOTE_SOCKET = TARGET.remote_docker
FLOOR_CMD = ['docker', 'run', '--rm', BASE, 'python', '-c', "print('SUCCESS')"]


class StepFailed(Exception):
    """A command the bench runs ended with an error: its rows are left out, said at the end (exit status 1)."""


def timed(command, cwd=None, env=None) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise StepFailed(f'benchmark step failed: {" ".join(command)}\n{result.stdout}\n{result.stderr}')
    return elapsed, result.stdout


COUNTER_CHAIN = f'TG_BENCH_{os.getpid()}'  # one of its own: a bench of another checkout may run at the same time
CHANNELS = ('index', 'ssh', 'registry')
JUMPS = ('OUTPUT', 'FORWARD')  # the chain sees what this host sends and what it forwards


def counted() -> tuple[tuple[str, list[str]], ...]:
    """What a run sends to the remote: its SSH connection (Docker API, ssh transfer) and registry pulls; not the
    swarm's own heartbeats and gossip, which cross the same link all the time. Besides, what the remote downloads
    from the package index through this host (forwarded: its source is not this host's end of the link), which in
    the world does not cross the user's link. In the order of CHANNELS: (channel, iptables match)."""
    shown = subprocess.run(['ip', '-4', '-o', 'addr', 'show', 'dev', TARGET.link], capture_output=True, text=True,
                           check=True).stdout
    host_end = shown.split()[3].split('/')[0]  # this host's address on the link (TG_TEST_LINK)
    _, colon, port = TARGET.registry.split('/')[0].rpartition(':')
    registry_port = port if colon else '443'  # the registry's port: its pulls come from it
    return (('index', ['!', '-s', host_end]), ('ssh', ['-p', 'tcp', '--dport', str(TARGET.login().port)]),
            ('registry', ['-p', 'tcp', '--sport', registry_port]))


def iptables(*args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(['iptables', '-w', *args], capture_output=True, text=True, check=check)


def start_counting() -> None:
    """Count the IP bytes of SSH and registry traffic into the remote's namespace (iptables counters)."""
    if iptables('-N', COUNTER_CHAIN, check=False).returncode:
        iptables('-F', COUNTER_CHAIN)
    for _, match in counted():
        iptables('-A', COUNTER_CHAIN, '-o', TARGET.link, *match, '-j', 'RETURN')
    for chain in JUMPS:
        if iptables('-C', chain, '-j', COUNTER_CHAIN, check=False).returncode:
            iptables('-I', chain, '-j', COUNTER_CHAIN)


def stop_counting() -> None:
    for chain in JUMPS:
        iptables('-D', chain, '-j', COUNTER_CHAIN, check=False)
    iptables('-F', COUNTER_CHAIN, check=False)
    iptables('-X', COUNTER_CHAIN, check=False)


def tx_bytes() -> dict[str, int]:
    """Bytes (IP packets) sent so far to the remote, per channel (CHANNELS); the chain made again if it went."""
    found = iptables('-L', COUNTER_CHAIN, '-v', '-x', '-n', check=False)
    if found.returncode:
        start_counting()
        found = iptables('-L', COUNTER_CHAIN, '-v', '-x', '-n')
    listing = found.stdout.splitlines()[2:]
    return dict(zip(CHANNELS, (int(line.split()[1]) for line in listing if line.strip())))


def remote(*args) -> str:
    return subprocess.run(['docker', '-H', REMOTE_SOCKET, *args], capture_output=True, text=True, check=True).stdout


def drop_remote_images(keep: str) -> None:
    """Leave only ``keep`` (the base image) on the remote engine: ended tg_pipeline containers
    (e.g. swarm tasks of earlier runs) would keep their images' layers there."""
    ended = remote('ps', '-aq', '--filter', 'label=tg_pipeline.run_id', '--filter', 'status=exited').split()
    if ended:
        remote('rm', *ended)
    for line in remote('images', '--format', '{{.ID}} {{.Repository}}:{{.Tag}}').splitlines():
        image_id, name = line.split(' ', 1)
        if name != keep:
            subprocess.run(['docker', '-H', REMOTE_SOCKET, 'rmi', '-f', image_id], capture_output=True)


def ensure_base_on_remote() -> None:
    if subprocess.run(['docker', '-H', REMOTE_SOCKET, 'image', 'inspect', BASE], capture_output=True).returncode:
        save = subprocess.Popen(['docker', 'save', BASE], stdout=subprocess.PIPE)
        subprocess.run(['docker', '-H', REMOTE_SOCKET, 'load', '-q'], stdin=save.stdout, check=True,
                       capture_output=True)
        save.wait()


def first_line_delay(output: str) -> float | None:
    """Seconds from the entry point's first line (Welcome) to the job's first line."""
    stamps = {}
    for line in output.splitlines():
        match = re.match(r'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: (.*)', line)
        if match:
            key = 'welcome' if 'Welcome to Training Grounds' in match[2] else \
                'job' if 'first line of the job' in match[2] else None
            if key and key not in stamps:
                stamps[key] = datetime.datetime.fromisoformat(match[1])
    if {'welcome', 'job'} <= stamps.keys():
        return (stamps['job'] - stamps['welcome']).total_seconds()
    return None


class Bench:
    def __init__(self, runs: int):
        self.runs = runs
        self.failed: list[str] = []  # parts left out: what failed there (see part)
        self.work = Path(tempfile.mkdtemp(prefix='tg-bench-'))
        self.project = self.work / 'project'
        shutil.copytree(HERE / 'project', self.project)
        fill(self.project / 'pipeline.toml')  # the test target's remote and registry
        # as a user's Python does: bytecode caches written and used (pip compiles an installed wheel's modules;
        # a shell that sets PYTHONDONTWRITEBYTECODE, as this machine's does, would recompile ours on every run)
        self.env = {**{k: v for k, v in os.environ.items() if k != 'PYTHONDONTWRITEBYTECODE'}, 'PYTHONPATH': str(REPO)}
        self.edits = 0
        self.rows: dict[str, dict] = {}
        self.delays: list[float] = []

    def doit(self, *args) -> tuple[float, str]:
        elapsed, out = timed([sys.executable, '-m', 'doit', *args], cwd=self.project, env=self.env)
        delay = first_line_delay(out)
        if delay is not None:
            self.delays.append(delay)
        return elapsed, out

    def edit_code(self) -> None:
        self.edits += 1
        with open(self.project / 'jobs' / 'helper.py', 'a') as file:
            file.write(f'# edit {self.edits} {time.time()}\n')

    @staticmethod
    def floor(where: str) -> float:
        """One run of the floor (a): ``local``, or ``remote`` (over a new ssh login)."""
        if where == 'local':
            return timed(FLOOR_CMD)[0]
        return timed(['ssh', '-o', 'BatchMode=yes', TARGET.remote, shlex.join(FLOOR_CMD)])[0]

    def measure(self, key: str, label: str, step, before=None, bytes_too: bool = False, runs: int = 0,
                paired: str = '') -> None:
        """``paired`` (``local`` or ``remote``): each run of ``step`` follows one of that floor, and the row keeps
        the median of their ratios: the load of this shared machine drifts within a bench run, and a ratio of two
        medians taken minutes apart carries that drift."""
        times, sent, floors = [], [], []
        for _ in range(runs or self.runs):
            if before:
                before()
            if paired:
                floors.append(self.floor(paired))
            start = tx_bytes() if bytes_too else {}
            times.append(step())
            if bytes_too:
                end = tx_bytes()
                sent.append({channel: end[channel] - start[channel] for channel in CHANNELS})
        row = {'label': label, 'median_s': statistics.median(times), 'runs_s': times}
        if paired:
            row.update(paired_floor=paired, paired_floor_s=floors,
                       median_paired_ratio=statistics.median(t / f for t, f in zip(times, floors)))
        if bytes_too:  # to the remote: what crosses the user's link (not the remote's own index downloads)
            row['median_bytes_to_remote'] = statistics.median(s['ssh'] + s['registry'] for s in sent)
            for channel in CHANNELS:
                row[f'median_bytes_{channel}'] = statistics.median(s[channel] for s in sent)
        self.rows[key] = row
        print(f'  {label}: {row["median_s"]:.3f} s', file=sys.stderr, flush=True)

    def code_layer_size(self) -> int:
        """Uncompressed size of the job image's top code layer: the layer file the build appended last."""
        build = self.project / 'build' / 'BenchJob'
        record = json.loads((build / 'image.json').read_text())
        return (build / (record.get('code_layers') or [['', 'code_layer.tar']])[-1][1]).stat().st_size

    def naive_setup(self) -> Path:
        """A deps-only image (built once) for the naive rebuild to start FROM."""
        from tg_pipeline.package.dockerfile import requirements
        context = self.work / 'naive'
        context.mkdir()
        (context / 'requirements.txt').write_text('\n'.join(requirements([])) + '\n')
        (context / 'Dockerfile.deps').write_text(
            f'FROM {BASE}\nCOPY requirements.txt /tmp/r.txt\nRUN pip install --no-cache-dir -r /tmp/r.txt\n')
        subprocess.run(['docker', 'build', '-q', '-t', 'bench-naive-deps', '-f', 'Dockerfile.deps', '.'],
                       cwd=context, check=True, capture_output=True, env={**os.environ, 'DOCKER_BUILDKIT': '0'})
        return context

    def naive_run(self, context: Path) -> float:
        """New sdist + `docker build --no-cache` of the package layer + run: what rebuilding every time costs."""
        from tg_pipeline.package.sdist import make_sdist
        from tg_pipeline.job.pickling import dumps
        start = time.perf_counter()
        sys.path.insert(0, str(self.project))
        try:
            from jobs.bench_job import BenchJob
            payload, _ = dumps(BenchJob(3))
        finally:
            sys.path.remove(str(self.project))
        sdist = make_sdist(context, 'benchjob', '0.0.0', 'benchjob__0_0_0', [self.project / 'jobs'], {'job': payload})
        (context / 'Dockerfile').write_text(
            'FROM bench-naive-deps\nENV PYTHONPATH=/opt/tg_pipeline/benchjob__0_0_0-0.0.0\n'
            'CMD ["python", "-m", "benchjob__0_0_0"]\n'
            f'ADD {sdist.name} /opt/tg_pipeline/\n')
        subprocess.run(['docker', 'build', '--no-cache', '-q', '-t', 'bench-naive', '.'], cwd=context, check=True,
                       capture_output=True, env={**os.environ, 'DOCKER_BUILDKIT': '0'})
        subprocess.run(['docker', 'run', '--rm', 'bench-naive'], check=True, capture_output=True)
        return time.perf_counter() - start

    def run(self, link_runs: int, link_only: bool, sweep_only: bool = False) -> dict:
        print(f'benchmark: {self.runs} runs each ({link_runs} of the {link.RATE} rows), project copy in '
              f'{self.project}', file=sys.stderr)
        ensure_base_on_remote()
        if sweep_only:  # rows (n) alone: bench/sweep.py
            sweep.sweep_rows(self)
            return self.rows
        if heavy.ONLY in sys.argv:  # rows (c), (d) and (o) alone: bench/heavy.py
            heavy.heavy_rows(self, REMOTE_SOCKET)
            return self.rows
        if not link_only:
            self.run_main()
            self.part(sweep.sweep_rows, '(n) sweeps on one host')
        if link_runs:
            self.part(lambda bench: link.link_rows(bench, link_runs), f'(j) the {link.RATE} rows')
        return self.rows

    def part(self, rows, name: str) -> None:
        """The rows ``rows(self)`` measures; a step that fails there leaves them out and is said (the other rows
        and the tables stay), and the bench then ends with exit status 1."""
        try:
            rows(self)
        except StepFailed as e:
            self.failed.append(f'{name}: {e}')
            print(f'  {name}: left out, a step failed (said at the end)', file=sys.stderr, flush=True)

    def run_main(self) -> None:
        """Rows (a) to (i)."""
        self.measure('a_floor_local', '(a) floor: docker run --rm BASE python -c print, local',
                     lambda: self.floor('local'))
        self.measure('a_floor_remote', f'(a) floor: the same via ssh {TARGET.remote}', lambda: self.floor('remote'),
                     bytes_too=True)
        self.doit('run_local', 'job=BenchJob')  # warm up: first build
        self.measure('b_local_unchanged', '(b) tg_pipeline local, nothing changed',
                     lambda: self.doit('run_local', 'job=BenchJob')[0], paired='local')
        self.measure('c_local_code_edit', '(c) local after a code-only edit',
                     lambda: self.doit('run_local', 'job=BenchJob')[0], before=self.edit_code, paired='local')
        self.doit('run_remote', 'job=BenchJob')  # warm up: registry and remote have the dependency layer
        self.delays.clear()
        self.measure('d_remote_code_edit', '(d) remote after a code-only edit (registry)',
                     lambda: self.doit('run_remote', 'job=BenchJob')[0], before=self.edit_code, bytes_too=True,
                     paired='remote')
        self.rows['d_remote_code_edit']['code_layer_bytes'] = self.code_layer_size()
        self.measure('d_remote_code_edit_ssh', '(d) remote after a code-only edit (ssh transfer)',
                     lambda: self.doit('run_remote', 'job=BenchJob', 'transfer=ssh')[0], before=self.edit_code,
                     bytes_too=True, paired='remote')
        self.rows['d_remote_code_edit_ssh']['code_layer_bytes'] = self.code_layer_size()
        heavy.heavy_rows(self, REMOTE_SOCKET)
        self.measure('e_remote_lacks_job_layers', '(e) remote lacks the job layers, has the base (registry)',
                     lambda: self.doit('run_remote', 'job=BenchJob')[0], before=lambda: drop_remote_images(BASE),
                     bytes_too=True)
        self.measure('e_remote_lacks_job_layers_ssh', '(e) remote lacks the job layers, has the base (ssh)',
                     lambda: self.doit('run_remote', 'job=BenchJob', 'transfer=ssh')[0],
                     before=lambda: drop_remote_images(BASE), bytes_too=True)
        context = self.naive_setup()
        self.measure('f_naive_full_rebuild', '(f) naive: new sdist + docker build --no-cache + run',
                     lambda: self.naive_run(context))
        self.doit('run_swarm', 'job=BenchSweep')  # warm up: image built and pushed
        self.measure('i_swarm_sweep_16', '(i) 16 small jobs: one sweep on the 2-node swarm',
                     lambda: self.doit('run_swarm', 'job=BenchSweep')[0])
        self.rows['i_swarm_sweep_16']['note'] = f'{self.rows["i_swarm_sweep_16"]["median_s"] / 16:.3f} s per job'
        self.measure('i_local_sequential_16', '(i) 16 small jobs: sequential doit run_local',
                     lambda: sum(self.doit('run_local', 'job=BenchJob')[0] for _ in range(16)))
        self.rows['i_local_sequential_16']['note'] = \
            f'{self.rows["i_local_sequential_16"]["median_s"] / 16:.3f} s per job'
        parts.parts_rows(self, REMOTE_SOCKET)
        self.rows['h_start_overhead'] = {'label': '(h) in-container start: entry point -> job first line',
                                         'median_s': statistics.median(self.delays), 'runs_s': self.delays}
        bigtree.remote_command_rows(self)
        bigtree.big_tree_rows(self)  # last: the project has 2,000 more modules from here on


def _size(text: str) -> int:
    number, unit = re.match(r'([\d.]+)\s*([kMG]?B)', text).groups()
    return int(float(number) * {'B': 1, 'kB': 1e3, 'MB': 1e6, 'GB': 1e9}[unit])


def _amount(n: float) -> str:
    return f'{n / 1e6:.1f} MB' if n >= 1e6 else f'{n / 1e3:.1f} kB'


def _sent(row: dict) -> str:
    """The bytes column: to the remote per channel, and what the remote fetched from the index itself."""
    if 'median_bytes_to_remote' not in row:
        return row.get('note', '')
    sent = f'{_amount(row["median_bytes_to_remote"])} = ssh {_amount(row["median_bytes_ssh"])} ' \
           f'+ registry {_amount(row["median_bytes_registry"])}'
    if row.get('median_bytes_index', 0) >= 1e5:
        sent += f'; the remote from the index {_amount(row["median_bytes_index"])}'
    for key, what in (('code_layer_bytes', 'code layer'), ('dependency_layer_bytes', 'dependency layer')):
        if row.get(key):
            sent += f' ({what} {_amount(row[key])})'
    return sent + (f'; {row["note"]}' if row.get('note') else '')


def table(rows: dict) -> str:
    floor_local = rows.get('a_floor_local', {}).get('median_s')
    floor_remote = rows.get('a_floor_remote', {}).get('median_s')
    naive = rows.get('f_naive_full_rebuild', {}).get('median_s')
    lines = [f'{"measure":62} {"median":>9} {"x floor":>8} {"x naive":>8}  bytes to remote, per job', '-' * 110]
    for key, row in rows.items():
        if 'error' in row:
            lines.append(f'{row["label"]:62} {"failed":>9}  {row["error"]}')
            continue
        floor = floor_remote if 'remote' in key else floor_local
        plain = key.startswith(('a_', 'h_', 'i_', 'j_', 'k_', 'l_', 'n_'))  # no ratio to the floor or the naive rebuild
        ratio_floor = '' if plain or not floor else f'{row["median_s"] / floor:.2f}'
        ratio_naive = '' if plain or not naive else f'{row["median_s"] / naive:.2f}'
        lines.append(f'{row["label"]:62} {row["median_s"]:8.3f}s {ratio_floor:>8} {ratio_naive:>8}  {_sent(row)}')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--link-runs', type=int, default=1,
                        help=f'runs of each {link.RATE} row (j), slow: about a minute or two each; 0 = leave them out')
    parser.add_argument('--link-only', action='store_true', help='only the (j) rows')
    parser.add_argument('--sweep-only', action='store_true', help='only the (n) rows: sweeps on one host')
    parser.add_argument(heavy.ONLY, action='store_true', help='only the rows (c), (d) and the heavy job\'s (o)')
    args = parser.parse_args()
    link.shape(None)  # a shaping left over by an interrupted run would slow every row
    start_counting()
    bench = Bench(args.runs)
    try:
        rows = bench.run(args.link_runs, args.link_only, args.sweep_only)
    finally:
        stop_counting()
        link.shape(None)
    found = targets.targets(rows)
    print(table(rows))
    print()
    print(targets.targets_table(found))
    print()
    print(targets.own_table(rows))
    print()
    print(heavy.heavy_table(heavy.heavy_targets(rows)))
    out = HERE / 'results' / 'latest.json'
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({'runs': args.runs, 'link_runs': args.link_runs, 'link_rate': link.RATE,
                               'base_image': BASE, 'rows': rows, 'targets': found,
                               'heavy_targets': heavy.heavy_targets(rows), 'failed': bench.failed}, indent=1))
    print(f'\nJSON: {out}')
    if bench.failed:
        print('\nleft out, a step failed:\n' + '\n'.join(bench.failed) + f'\n(the project copy stays for a look: '
              f'{bench.work})', file=sys.stderr)
        raise SystemExit(1)
    shutil.rmtree(bench.work, ignore_errors=True)  # the project copy (its images stay: the next bench reuses them)


if __name__ == '__main__':
    main()
