"""The host a run happens on, as a run's record keeps it: its Docker engine's version, OS, kernel, CPU count and
memory (one ``docker info``), its GPUs and driver where ``nvidia-smi`` answers there, and the GPUs the run was
given; a swarm's nodes; for an attached run, this machine. Asked once per host and process."""
from __future__ import annotations

import os
import platform
import subprocess

GPU_QUERY = 'nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader'
_KNOWN: dict[str, dict] = {}


def parse_gpus(text: str) -> list[dict]:
    """``nvidia-smi``'s CSV lines as {index, name, driver, memory}."""
    found = []
    for line in (text or '').splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) >= 3 and parts[0].isdigit():
            found.append({'index': int(parts[0]), 'name': parts[1], 'driver': parts[2],
                          'memory': parts[3] if len(parts) > 3 else ''})
    return found


def _gpus_here() -> list[dict]:
    try:
        done = subprocess.run(GPU_QUERY.split(), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_gpus(done.stdout) if done.returncode == 0 else []


def _gpus_over_ssh(host) -> list[dict]:
    """The remote host's GPUs, asked over its connection as any command there (the shared connection of the ssh
    program, or paramiko's: :func:`tg_pipeline.hosts.shell.run`)."""
    from tg_pipeline.hosts.shell import run
    try:
        done = run(host, GPU_QUERY + ' 2>/dev/null', timeout=30)
    except Exception:  # noqa: BLE001 - no answer is no GPU information, never an error
        return []
    return parse_gpus(done.out) if done.code == 0 else []


def engine_facts(client) -> dict:
    info = client.info()
    return {'engine': info.get('ServerVersion', ''), 'os': info.get('OperatingSystem', ''),
            'kernel': info.get('KernelVersion', ''), 'arch': info.get('Architecture', ''),
            'cpus': info.get('NCPU'), 'memory': info.get('MemTotal'), 'hostname': info.get('Name', '')}


def _nodes(client) -> list[dict]:
    nodes = []
    for node in client.nodes.list():
        attrs = node.attrs
        resources = attrs.get('Description', {}).get('Resources', {})
        nodes.append({'hostname': attrs.get('Description', {}).get('Hostname', ''),
                      'engine': attrs.get('Description', {}).get('Engine', {}).get('EngineVersion', ''),
                      'cpus': (resources.get('NanoCPUs') or 0) // 10 ** 9, 'memory': resources.get('MemoryBytes'),
                      'role': attrs.get('Spec', {}).get('Role', '')})
    return sorted(nodes, key=lambda n: n['hostname'])


def of_host(host) -> dict:
    """The facts of a :class:`~tg_pipeline.hosts.host.Host` (asked once per host in a process)."""
    if host.name not in _KNOWN:
        try:
            found = {'name': host.name, **engine_facts(host.docker)}
        except Exception as e:  # noqa: BLE001 - the run itself will say what is wrong with the engine
            found = {'name': host.name, 'error': f'{type(e).__name__}: {e}'}
        found['gpus'] = _gpus_over_ssh(host) if host.remote else _gpus_here()
        if host.where == 'swarm':
            try:
                found['nodes'] = _nodes(host.docker)
            except Exception:  # noqa: BLE001
                found['nodes'] = []
        _KNOWN[host.name] = found
    return dict(_KNOWN[host.name])


def here() -> dict:
    """This machine (an attached run's host)."""
    if 'attached' not in _KNOWN:
        memory = None
        try:
            memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
        except (ValueError, OSError, AttributeError):
            pass
        _KNOWN['attached'] = {'name': 'this process', 'os': platform.platform(), 'kernel': platform.release(),
                              'arch': platform.machine(), 'cpus': os.cpu_count(), 'memory': memory,
                              'hostname': platform.node(), 'gpus': _gpus_here()}
    return dict(_KNOWN['attached'])
