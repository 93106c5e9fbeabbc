"""A host's GPUs, who holds them, and the lock under which one run at a time picks some.

* :func:`inventory`: ``nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used --format=csv,noheader``
  run on the host (here, or over SSH): the same command and parser for real GPUs and for a stand-in
  ``nvidia-smi``; None where there is no nvidia-smi (no NVIDIA driver: the engine cannot give GPUs either).
* :func:`holders`: the running containers of that engine that hold GPUs, whoever started them: their device
  requests as the NVIDIA driver of Docker reads them (device ids, by index or UUID; a count N is GPUs 0 to N-1;
  -1 is all), and ``NVIDIA_VISIBLE_DEVICES`` of a container run with the ``nvidia`` runtime. tg_pipeline's own
  runs say theirs in the label ``tg_pipeline.gpu_ids``, with the project, owner, run id, job and variant.
* :func:`gpu_lock`: ``flock`` on the folder :data:`LOCK` of the host, taken by a shell command that holds it while
  its input is open (:class:`~tg_pipeline.hosts.shell.Held`): every user of the box takes the same lock, a holder
  that dies lets go at once (its connection closes), and one that hangs after :data:`LOCK_HOLD_S` seconds. A
  folder, not a file: ``flock`` opens a folder read-only, so no user needs to write what another made.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.hosts.shell import Held, run
from tg_pipeline.runtime import protocol

QUERY = 'nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used --format=csv,noheader'
LOCK = '/tmp/tg_pipeline-gpus.lock'
LOCK_HOLD_S = 120
NOT_FOUND = 127
HOLDING_STATES = ('running', 'paused', 'restarting')


class GPU(NamedTuple):
    index: str  # type: ignore[assignment]  # nvidia-smi's index (the field hides tuple.index, on purpose)
    uuid: str
    name: str
    total_mib: float | None
    used_mib: float | None


def place(host) -> str:
    """The host for people: ``this machine`` or ``user@host:port``."""
    return host.name.split(' ', 1)[1] if host.remote else 'this machine'


def _mib(text: str) -> float | None:
    number = text.strip().split(' ')[0]
    try:
        return float(number)
    except ValueError:
        return None  # [N/A]


def parse_inventory(text: str) -> list[GPU]:
    """The GPUs of :data:`QUERY`'s output, one line each: ``0, GPU-uuid, NAME, 16384 MiB, 12 MiB``."""
    found = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        found.append(GPU(parts[0], parts[1], ', '.join(parts[2:-2]), _mib(parts[-2]), _mib(parts[-1])))
    return found


def inventory(host) -> list[GPU] | None:
    """The host's GPUs as its nvidia-smi lists them; None when it has no nvidia-smi."""
    output = run(host, QUERY)
    if output.code == NOT_FOUND or (output.code and 'not found' in output.err):
        return None
    if output.code:
        raise PipelineError(f'nvidia-smi failed on {place(host)} (exit code {output.code}): '
                            f'{(output.err or output.out).strip()[-500:]}',
                            hint=f'run nvidia-smi there to see why ({_login(host)}); a driver that does not match '
                                 f'its kernel module is the usual cause (a reboot fixes that)')
    return parse_inventory(output.out)


def _login(host) -> str:
    where = place(host)
    if not host.remote:
        return 'here'
    login, _, port = where.rpartition(':')
    return f'ssh -p {port} {login}' if port and port != '22' else f'ssh {login}'


class Holder(NamedTuple):
    """A running container that holds GPUs."""
    ids: tuple  # GPU indexes (an id the inventory does not know stays as given)
    name: str
    image: str
    labels: dict  # its tg_pipeline.* labels without the prefix ({} for a container not run by tg_pipeline)

    @property
    def ours(self) -> bool:
        return bool(self.labels.get('run_id'))

    def who(self) -> str:
        """Whose it is, for people: ``run R (job J, variant 1) of project P of alice`` or ``container NAME``."""
        if not self.ours:
            return f'container {self.name} ({self.image}), not run by tg_pipeline'
        get = self.labels.get
        variant = f', variant {get("variant")}' if get('variant') else ''
        return f'run {get("run_id")} (job {get("job")}{variant}) of project {get("project") or "?"} of ' \
               f'{get("owner") or "?"}'


def device_ids(request: dict, gpus: list[GPU]) -> tuple:
    """The GPU indexes a device request holds, as Docker's NVIDIA driver reads it; () when it asks for no GPU."""
    capabilities = [c for group in request.get('Capabilities') or [] for c in group]
    if request.get('Driver') != 'nvidia' and 'gpu' not in capabilities:
        return ()
    indexes = [g.index for g in gpus]
    if request.get('DeviceIDs'):
        return tuple(index_of(i, gpus) for i in request['DeviceIDs'])
    count = request.get('Count') or 0
    return tuple(indexes) if count < 0 else tuple(indexes[:count])


def index_of(device: str, gpus: list[GPU]) -> str:
    """A device id (an index or a UUID) as the index of that GPU; as given when no GPU has it."""
    for gpu in gpus:
        if device in (gpu.index, gpu.uuid):
            return gpu.index
    return device


def _runtime_ids(attrs: dict, gpus: list[GPU]) -> tuple:
    """``NVIDIA_VISIBLE_DEVICES`` of a container of the ``nvidia`` runtime (without a device request)."""
    if (attrs.get('HostConfig') or {}).get('Runtime') != 'nvidia':
        return ()
    env = dict(e.split('=', 1) for e in (attrs.get('Config') or {}).get('Env') or [] if '=' in e)
    value = env.get('NVIDIA_VISIBLE_DEVICES', '')
    if value in ('', 'void', 'none'):
        return ()
    return tuple(g.index for g in gpus) if value == 'all' else tuple(index_of(i, gpus) for i in value.split(','))


def holders(client, gpus: list[GPU]) -> list[Holder]:
    """The running containers of the engine ``client`` that hold GPUs, whoever started them."""
    found = []
    prefix = protocol.LABEL + '.'
    for item in client.api.containers(all=True, filters={'status': list(HOLDING_STATES)}):
        labels = item.get('Labels') or {}
        ours = {k[len(prefix):]: v for k, v in labels.items() if k.startswith(prefix)}
        name = (item.get('Names') or ['/?'])[0].lstrip('/')
        if ours.get('run_id') and 'gpu_ids' in ours:
            ids = tuple(i for i in ours['gpu_ids'].split(',') if i)
        elif ours.get('run_id') and 'gpus' not in ours:
            continue  # our run without GPUs: nothing to ask the engine
        else:
            try:
                attrs = client.api.inspect_container(item['Id'])
            except Exception:  # noqa: BLE001 - it went away meanwhile
                continue
            requests = (attrs.get('HostConfig') or {}).get('DeviceRequests') or []
            ids = tuple(dict.fromkeys([i for r in requests for i in device_ids(r, gpus)] + list(_runtime_ids(attrs,
                                                                                                             gpus))))
        if ids:
            found.append(Holder(ids, name, item.get('Image', ''), ours if ours.get('run_id') else {}))
    return found


def held(holders_found: list[Holder]) -> dict[str, list[Holder]]:
    """GPU index -> the holders of that GPU."""
    by_gpu: dict[str, list[Holder]] = {}
    for holder in holders_found:
        for index in holder.ids:
            by_gpu.setdefault(index, []).append(holder)
    return by_gpu


def lock_command(path: str = LOCK, hold_s: float = LOCK_HOLD_S) -> str:
    """The shell command that takes the lock and says so (``locked``), then holds it until its input closes."""
    return (f'd={path}; mkdir -p "$d" 2>/dev/null; chmod a+rx "$d" 2>/dev/null; '
            f'exec flock "$d" sh -c \'echo locked; exec timeout {hold_s:g} cat >/dev/null\'')


@contextlib.contextmanager
def gpu_lock(host, console: Console = CONSOLE, path: str = LOCK):
    """Hold the host's GPU lock (every user of the box takes the same one) for the block."""
    holder = Held(host, lock_command(path))
    try:
        line = holder.wait_line(5, lambda: console.print(f'Waiting for the GPU lock of {place(host)} ({path}): '
                                                         f'another run is picking its GPUs'))
        if line != 'locked':
            raise PipelineError(f'cannot take the GPU lock {path} on {place(host)}: '
                                f'{holder.error_text() or "the lock command ended without a word"}',
                                hint=f'it needs flock (util-linux) there, and the folder {path} readable by every '
                                     f'user of the box: see ls -ld {path} ({_login(host)}); its owner can run '
                                     f'chmod a+rx {path}')
        yield
    finally:
        holder.close()
