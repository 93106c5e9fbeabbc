"""Step 6d: run the job image on Docker Swarm, as one replicated-job service: one task per variant.

All variants of a sweep ship in ONE image (resource ``variants``); each task
picks its variant by its task slot (``TG_PIPELINE_SLOT={{.Task.Slot}}``, a
template the engine fills in). Swarm schedules the tasks on its nodes within
the reservations and constraints, at most ``max_concurrent`` at a time.

Results travel back through the service's log, which the manager serves for
tasks on any node: the entry point prints the run folder (return value,
traceback, output folder) as base64 marker lines, collected here into
``build/JOB/runs/swarm/RUN_ID/variant_N/``. The service carries the same
labels as a container run (job, version, run id, start time), so status,
logs, stop and result find it from any machine.
"""
from __future__ import annotations

import base64
import io
import json
import re
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.types import Resources, RestartPolicy, ServiceMode

from tg_pipeline.errors import JobFailed, PipelineError, RemoteError
from tg_pipeline.runs.container import LABEL, RUN_DIR, RunSpec, labels, load_result, new_run_id

TERMINAL = {'complete', 'failed', 'rejected', 'shutdown', 'orphaned', 'remove'}
UNSCHEDULABLE = ('no suitable node', 'insufficient resources')
MARKER = re.compile(r'^TG_PIPELINE_FILE (\d+) (\S+) (\d+)/(\d+) (\S*)$')


class SwarmError(PipelineError):
    """The swarm cannot run this (no swarm, nothing can host the tasks, ...)."""


@dataclass
class SwarmOptions:
    max_concurrent: int = 0
    cpu_reservation: float = 0
    memory_reservation_gb: float = 0
    constraints: list = field(default_factory=list)
    schedule_timeout: float = 30
    labels: dict = field(default_factory=dict)  # the user's own, on the service and its containers

    @classmethod
    def from_config(cls, swarm: dict) -> 'SwarmOptions':
        return cls(**{k: swarm[k] for k in ('max_concurrent', 'cpu_reservation', 'memory_reservation_gb',
                                             'constraints', 'schedule_timeout', 'labels')})


def check_capacity(client, options: SwarmOptions, where: str) -> None:
    """Fail at once when this engine is no swarm manager, or no ready node can hold one task's reservation."""
    try:
        nodes = client.nodes.list()
    except docker.errors.APIError as e:
        raise SwarmError(f'the Docker engine of {where} is not a swarm manager: {e.explanation or e}',
                         hint='docker swarm init (there), or point [swarm] manager at a manager') from None
    ready = [n.attrs for n in nodes if n.attrs.get('Status', {}).get('State') == 'ready'
             and n.attrs.get('Spec', {}).get('Availability') == 'active']
    cpu = int(options.cpu_reservation * 1e9)
    memory = int(options.memory_reservation_gb * 1024 ** 3)
    fits = [n for n in ready if n['Description']['Resources'].get('NanoCPUs', 0) >= cpu
            and n['Description']['Resources'].get('MemoryBytes', 0) >= memory]
    if not fits:
        biggest = max(((n['Description']['Resources'].get('NanoCPUs', 0) / 1e9,
                        n['Description']['Resources'].get('MemoryBytes', 0) / 1024 ** 3) for n in ready),
                      default=(0, 0))
        raise SwarmError(
            f'the tasks cannot be scheduled: each reserves {options.cpu_reservation:g} CPU and '
            f'{options.memory_reservation_gb:g} GB, and no ready node of the swarm has that much '
            f'({len(ready)} ready, the largest has {biggest[0]:g} CPU and {biggest[1]:.1f} GB)',
            hint='lower cpu_reservation / memory_reservation_gb in [swarm] (reserve_cpu=, reserve_memory= on the '
                 'command line), or add a bigger node to the swarm')


def service_name(spec: RunSpec, run_id: str) -> str:
    """A DNS label (what swarm accepts): letters, digits and '-', at most 63, ending with the run id."""
    head = re.sub(r'[^a-z0-9-]+', '-', f'tg-{spec.package}-{spec.version}'.lower())[:63 - len(run_id) - 1]
    return f'{head.strip("-")}-{run_id}'


def start(client, spec: RunSpec, reference: str, variants: list[str], options: SwarmOptions, where: str,
          environ=None, auth=None) -> tuple[str, str]:
    """Create the replicated-job service; return (run id, service id)."""
    run_id = new_run_id()
    env = {**spec.environment(environ), 'TG_PIPELINE_RUN_DIR': RUN_DIR, 'TG_PIPELINE_RUN_ID': run_id,
           'TG_PIPELINE_SEND_BACK': '1', 'TG_PIPELINE_SLOT': '{{.Task.Slot}}'}
    tags = {**{str(k): str(v) for k, v in options.labels.items()}, **labels(spec, run_id, where),
            f'{LABEL}.variants': json.dumps(variants)}
    count = len(variants)
    resources = Resources(cpu_limit=int(spec.cpu * 1e9) or None, mem_limit=int(spec.memory_gb * 1024 ** 3) or None,
                          cpu_reservation=int(options.cpu_reservation * 1e9) or None,
                          mem_reservation=int(options.memory_reservation_gb * 1024 ** 3) or None)
    try:
        service = client.services.create(
            reference, name=service_name(spec, run_id), env=[f'{k}={v}' for k, v in env.items()],
            labels=tags, container_labels=tags, init=True, resources=resources,
            mode=ServiceMode('replicated-job', replicas=count, concurrency=options.max_concurrent or count),
            restart_policy=RestartPolicy(condition='none'), constraints=list(options.constraints))
    except docker.errors.APIError as e:
        raise SwarmError(f'the swarm on {where} refused the service: {e.explanation or e}',
                         hint='check [swarm] constraints and that the manager can reach the registry') from None
    return run_id, service.id


def services(client, job: str) -> dict:
    """run_id -> service of the job's swarm runs on that manager."""
    found = client.services.list(filters={'label': f'{LABEL}.job={job}'})
    return {s.attrs['Spec']['Labels'].get(f'{LABEL}.run_id', ''): s for s in found}


def _slot(task: dict) -> int:
    return task.get('Slot', 0)  # replicated-job slots count from 0, and the API omits a zero


def chosen_tasks(tasks: list[dict]) -> dict[int, dict]:
    """slot -> the task that stands for its variant: one that completed, else its first ended one, else
    the latest. (The engine may start a failed slot again; its first failure decides.)"""
    def rank(task):
        state = task['Status']['State']
        return 2 if state == 'complete' else 1 if state in TERMINAL else 0
    chosen: dict[int, dict] = {}
    for task in sorted(tasks, key=lambda t: t['CreatedAt']):
        current = chosen.get(_slot(task))
        if current is None or rank(task) > rank(current) or rank(task) == rank(current) == 0:
            chosen[_slot(task)] = task
    return chosen


def _follow(client, service_id: str, slots: dict, out, stop: threading.Event) -> None:
    """Print the service's log live, each line prefixed with its variant; marker lines are not shown."""
    try:
        for frame in client.api.service_logs(service_id, stdout=True, stderr=True, follow=True, details=True):
            if stop.is_set():
                return
            details, _, text = frame.decode('utf-8', 'replace').partition(' ')
            task = dict(kv.split('=', 1) for kv in details.split(',') if '=' in kv).get('com.docker.swarm.task.id')
            for line in text.splitlines():
                if not line.startswith('TG_PIPELINE_FILE '):
                    out.write(f'[variant {slots.get(task, "?")}] {line}\n')
            out.flush()
    except Exception:  # the service was removed (the stream ends with it), or the connection went
        return


def watch(client, service_id: str, run_id: str, spec: RunSpec, variants: list[str], where: str,
          options: SwarmOptions, log_dir, silent: bool = False, out=None, err=None,
          on_interrupt: str = 'stop') -> dict:
    """Wait for every task to end, streaming the log; then collect and remove the service."""
    out, err = out or sys.stdout, err or sys.stderr
    slots: dict[str, int] = {}
    stop = threading.Event()
    if not silent:
        threading.Thread(target=_follow, args=(client, service_id, slots, out, stop), daemon=True).start()
    pending_since = None
    try:
        while True:
            tasks = client.api.tasks(filters={'service': service_id})
            slots.update({t['ID']: _slot(t) for t in tasks})
            stuck = [t for t in tasks if t['Status']['State'] == 'pending'
                     and any(m in (t['Status'].get('Err') or '') for m in UNSCHEDULABLE)]
            pending_since = (pending_since or time.time()) if stuck else None
            if stuck and time.time() - pending_since > options.schedule_timeout:
                _remove(client, service_id)
                raise SwarmError(f'the tasks of run {run_id} cannot be scheduled on {where}: '
                                 f'{stuck[0]["Status"]["Err"]} (waited {options.schedule_timeout:g} s); '
                                 f'the service was removed',
                                 hint='lower the reservations or limits, relax [swarm] constraints, or add nodes')
            done = [t for t in chosen_tasks(tasks).values() if t['Status']['State'] in TERMINAL]
            if len(done) >= len(variants):
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop.set()
        if on_interrupt == 'detach':
            print(f'\nInterrupted: swarm run {run_id} goes on ({where})\n  re-attach: '
                  f'doit logs job={spec.job} where=swarm run_id={run_id} follow=1', file=err, flush=True)
        else:
            print(f'\nInterrupted: removing swarm service of run {run_id} ({where})', file=err, flush=True)
            _remove(client, service_id)
        raise
    except PipelineError:
        stop.set()
        raise
    except Exception as e:
        stop.set()
        if where.startswith('swarm local'):
            raise
        raise RemoteError(f'the connection to the swarm manager ({where}) was lost during run {run_id} '
                          f'({type(e).__name__}: {e}); the tasks go on there',
                          hint=f're-attach: doit logs job={spec.job} where=swarm run_id={run_id} follow=1') from None
    stop.set()
    return finish(client, service_id, run_id, spec, variants, where, log_dir)


def finish(client, service_id: str, run_id: str, spec: RunSpec, variants: list[str], where: str, log_dir) -> dict:
    """Collect every task's log and run folder, remove the service, return the results by variant
    or raise :class:`JobFailed` naming the variants that failed."""
    tasks = chosen_tasks(client.api.tasks(filters={'service': service_id}))
    logs, files = collect_logs(client, service_id, tasks)
    run_root = Path(log_dir, run_id)
    results, failed = [], []
    for index, label in enumerate(variants):
        task = tasks.get(index, {})
        status = task.get('Status', {})
        code = status.get('ContainerStatus', {}).get('ExitCode')
        run_dir = run_root / f'variant_{index}'
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir.parent / f'variant_{index}.out').write_text(logs.get(index, ''))
        if index in files:
            with tarfile.open(fileobj=io.BytesIO(files[index])) as tar:
                tar.extractall(run_dir, **({'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}))
        entry = {'variant': index, 'label': label, 'state': status.get('State', 'missing'), 'exit_code': code,
                 'error': status.get('Err', ''), 'node': task.get('NodeID', ''), 'run_dir': str(run_dir)}
        if entry['state'] == 'complete' and code == 0:
            entry['value'] = load_result(str(run_dir), spec.module)
        else:
            trace = run_dir / 'traceback.txt'
            entry['traceback'] = trace.read_text(errors='replace') if trace.exists() else logs.get(index, '')
            failed.append(entry)
        results.append(entry)
    record = {'run_id': run_id, 'job': spec.job, 'where': where, 'module': spec.module, 'variants': [
        {k: v for k, v in r.items() if k not in ('value', 'traceback')} for r in results]}
    run_root.mkdir(parents=True, exist_ok=True)
    Path(log_dir, f'{run_id}.json').write_text(json.dumps(record, indent=1))
    _remove(client, service_id, settle=3 if failed else 0)
    summary = {'run_id': run_id, 'where': where, 'variants': results, 'run_dir': str(run_root),
               'values': {r['label']: r.get('value') for r in results}}
    if failed:
        raise variant_failure(spec.job, run_id, where, failed)
    return summary


def variant_failure(job: str, run_id: str, where: str, failed: list[dict]) -> JobFailed:
    names = ', '.join(f'variant {f["variant"]} ({f["label"]}): {f["state"]}'
                      + (f' exit {f["exit_code"]}' if f['exit_code'] is not None else '')
                      + (f' ({f["error"]})' if f['error'] and not f['error'].startswith('task: non-zero exit') else '')
                      for f in failed)
    first = failed[0]
    return JobFailed(f'{len(failed)} variant(s) of job {job} failed in swarm run {run_id} ({where}): {names}',
                     exit_code=first['exit_code'], output=first.get('traceback'),
                     remote_traceback=first.get('traceback'),
                     hint=f'every variant\'s log and results: doit status job={job} where=swarm run_id={run_id}')


def collect_logs(client, service_id: str, tasks: dict, wait: float = 15) -> tuple[dict, dict]:
    """(variant -> its log text, variant -> its run folder as tar.gz bytes), from the service's log.

    The manager gathers logs from the nodes; a run folder is complete when all of its parts arrived,
    so this re-reads (up to ``wait`` seconds) until every task that finished its entry point sent one."""
    slot_of = {t['ID']: slot for slot, t in tasks.items()}
    expected = {slot for slot, t in tasks.items() if t['Status'].get('ContainerStatus', {}).get('ExitCode') in (0, 1)}
    deadline = time.time() + wait
    while True:
        lines: dict[int, list[str]] = {}
        parts: dict[int, dict[int, str]] = {}
        totals: dict[int, int] = {}
        for frame in client.api.service_logs(service_id, stdout=True, stderr=True, details=True, follow=False):
            details, _, text = frame.decode('utf-8', 'replace').partition(' ')
            task = dict(kv.split('=', 1) for kv in details.split(',') if '=' in kv).get('com.docker.swarm.task.id')
            slot = slot_of.get(task, -1)
            for line in text.splitlines():
                marker = MARKER.match(line)
                if marker:
                    parts.setdefault(slot, {})[int(marker.group(3))] = marker.group(5)
                    totals[slot] = int(marker.group(4))
                else:
                    lines.setdefault(slot, []).append(line)
        complete = {s for s, total in totals.items() if len(parts.get(s, {})) == total}
        if expected <= complete or time.time() > deadline:
            break
        time.sleep(0.5)
    files = {s: base64.b64decode(''.join(parts[s][i] for i in range(1, totals[s] + 1))) for s in complete}
    return {s: '\n'.join(l) + '\n' for s, l in lines.items()}, files


def reach_nodes(manager, engines) -> None:
    """Remember which of ``engines`` (clients of other engines reachable from here) are nodes of
    ``manager``'s swarm: :func:`_remove` clears the service's containers there too."""
    ids = {n.id for n in manager.nodes.list()}
    manager.tg_pipeline_nodes = [e for e in engines if e.info().get('Swarm', {}).get('NodeID') in ids]


def _remove(client, service_id: str, settle: float = 0) -> None:
    """Remove the service, then its task containers on every engine we reach.

    Docker 20.10 leaves the tasks of a removed replicated-job service, and their exited containers,
    behind (moby/moby#44312, fixed in Docker 24); removing the containers keeps the hosts clean.
    With ``settle``, keep sweeping that long: the engine may be starting a failed slot again just as the
    service goes, and that container appears a moment later."""
    try:
        client.api.remove_service(service_id)
    except docker.errors.NotFound:
        pass
    deadline = time.time() + settle
    while True:
        for engine in [client, *getattr(client, 'tg_pipeline_nodes', [])]:
            for container in engine.containers.list(
                    all=True, filters={'label': f'com.docker.swarm.service.id={service_id}'}):
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
        if time.time() >= deadline:
            return
        time.sleep(0.5)


def variant_labels(service) -> list[str]:
    return json.loads(service.attrs['Spec']['Labels'].get(f'{LABEL}.variants', '["0"]'))


def spec_of(service) -> RunSpec:
    tags = service.attrs['Spec']['Labels']
    return RunSpec(image=service.attrs['Spec']['TaskTemplate']['ContainerSpec']['Image'],
                   job=tags.get(f'{LABEL}.job', ''), package=tags.get(f'{LABEL}.package', ''),
                   version=tags.get(f'{LABEL}.version', ''), module=tags.get(f'{LABEL}.module', ''), env_names=[])


def run_swarm(client, spec: RunSpec, reference: str, variants: list[str], options: SwarmOptions, where: str,
              log_dir, silent: bool = False, detach: bool = False, on_interrupt: str = 'stop', out=None) -> dict:
    """Check, start, and (unless ``detach``) watch a swarm run of ``variants``."""
    out = out or sys.stdout
    check_capacity(client, options, where)
    run_id, service_id = start(client, spec, reference, variants, options, where)
    if not silent:
        print(f'Started swarm run {run_id} ({where}): {len(variants)} task(s), '
              f'at most {options.max_concurrent or len(variants)} at a time', file=out, flush=True)
    if detach:
        if not silent:
            print(f'  follow it: doit logs job={spec.job} where=swarm run_id={run_id} follow=1', file=out, flush=True)
        return {'run_id': run_id, 'where': where}
    return watch(client, service_id, run_id, spec, variants, where, options, log_dir, silent=silent, out=out,
                 on_interrupt=on_interrupt)


def print_results(summary: dict, out=None) -> None:
    out = out or sys.stdout
    print(f'Swarm run {summary["run_id"]}: results by variant (run folders in {summary["run_dir"]})', file=out)
    for r in summary['variants']:
        print(f'  variant {r["variant"]} ({r["label"]}): {r["state"]}, exit {r["exit_code"]}, '
              f'result {r.get("value")!r}', file=out)
    out.flush()


# --- lifecycle of swarm runs: where=swarm in the status/logs/stop/result tasks --------------------------
def _saved(log_dir) -> dict:
    log_dir = Path(log_dir)
    return {p.stem: p for p in log_dir.glob('*.json')} if log_dir.is_dir() else {}


def _pick(client, job: str, log_dir, where: str, run_id: str | None) -> tuple[str, object]:
    """(run id, its service or None when only collected here) of ``run_id`` or the latest run."""
    live, saved = services(client, job), _saved(log_dir)
    ids = sorted({*live, *saved} - {''})
    found = run_id or (ids[-1] if ids else None)
    if not found or found not in ids:
        raise PipelineError(f'no swarm run {run_id or ""} of job {job} on {where}'.replace('  ', ' '),
                            hint=f'known runs: {", ".join(ids[-5:]) or "none"}; start one: doit run_swarm job={job}')
    return found, live.get(found)


def task_states(client, service) -> dict[int, str]:
    return {slot: t['Status']['State']
            for slot, t in chosen_tasks(client.api.tasks(filters={'service': service.id})).items()}


def status(client, job: str, log_dir, where: str, run_id: str | None = None, out=None) -> list[dict]:
    out = out or sys.stdout
    live, saved = services(client, job), _saved(log_dir)
    ids = [_pick(client, job, log_dir, where, run_id)[0]] if run_id else sorted({*live, *saved} - {''})
    rows = []
    for rid in ids:
        if rid in live:
            states = task_states(client, live[rid])
            counts = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
            state = ', '.join(f'{n} {s}' for s, n in counts.items()) or 'no task yet'
        else:
            record = json.loads(saved[rid].read_text())
            ok = sum(1 for v in record['variants'] if v['state'] == 'complete' and v['exit_code'] == 0)
            state = f'collected, {ok}/{len(record["variants"])} variants succeeded'
        rows.append({'run_id': rid, 'state': state})
        print(f'{rid}  {state}', file=out)
    out.flush()
    return rows


def print_logs(client, job: str, log_dir, where: str, run_id: str | None = None, follow: bool = False,
               out=None) -> dict:
    out = out or sys.stdout
    found, service = _pick(client, job, log_dir, where, run_id)
    if service is None:
        for path in sorted(Path(log_dir, found).glob('variant_*.out'), key=lambda p: int(p.stem.split('_')[1])):
            print(f'# {path.stem}', file=out)
            out.write(path.read_text())
        out.flush()
        return {'run_id': found}
    spec, variants = spec_of(service), variant_labels(service)
    if follow:
        return watch(client, service.id, found, spec, variants, where, SwarmOptions(schedule_timeout=float('inf')),
                     log_dir, out=out)
    texts, _ = collect_logs(client, service.id, chosen_tasks(client.api.tasks(filters={'service': service.id})),
                            wait=0)
    for index in sorted(texts):
        print(f'# variant_{index}', file=out)
        out.write(texts[index])
    out.flush()
    return {'run_id': found}


def stop(client, job: str, log_dir, where: str, run_id: str | None = None, out=None) -> dict:
    """Collect what the run's tasks logged so far, then remove its service (which stops its tasks)."""
    out = out or sys.stdout
    found, service = _pick(client, job, log_dir, where, run_id)
    if service is None:
        raise PipelineError(f'swarm run {found} of job {job} has ended already', hint='see it: doit status ...')
    try:
        finish(client, service.id, found, spec_of(service), variant_labels(service), where, log_dir)
    except JobFailed:
        pass  # unfinished variants count as failed; what they logged is kept
    print(f'Stopped swarm run {found} of job {job} on {where}; its logs are in {Path(log_dir, found)}', file=out)
    return {'run_id': found}


def result(client, job: str, log_dir, where: str, run_id: str | None = None) -> dict:
    found, service = _pick(client, job, log_dir, where, run_id)
    if service is not None:
        states = task_states(client, service)
        if len(states) < len(variant_labels(service)) or not set(states.values()) <= TERMINAL:
            raise PipelineError(f'swarm run {found} of job {job} is still running on {where}',
                                hint=f'wait for it: doit logs job={job} where=swarm run_id={found} follow=1')
        return finish(client, service.id, found, spec_of(service), variant_labels(service), where, log_dir)
    record = json.loads(_saved(log_dir)[found].read_text())
    results = []
    for v in record['variants']:
        if v['state'] == 'complete' and v['exit_code'] == 0:
            v['value'] = load_result(v['run_dir'], record.get('module', ''))
        results.append(v)
    failed = [v for v in results if 'value' not in v]
    if failed:
        raise variant_failure(job, found, where, failed)
    return {'run_id': found, 'where': where, 'variants': results, 'run_dir': str(Path(log_dir, found)),
            'values': {r['label']: r.get('value') for r in results}}
