"""What a run gets from its host besides CPU and memory: GPUs, shared memory, IPC, host folders, cache volumes,
published ports, values from env files and a time limit (the job's :class:`~tg_pipeline.config.RunSettings`,
which the run's spec carries), and how each kind of run asks its engine for them.

* Container runs (:func:`container_options`): a device request with the capability ``gpu``, ``ShmSize``,
  ``IpcMode``, bind mounts (read-only unless ``:rw``), the project's cache volumes, port bindings. A host path
  is checked on the host the job runs on before the container is made (:func:`check_host_paths`); an engine
  that cannot give GPUs is told as one paragraph naming the host and the fix (:func:`start_problem`).
* Swarm runs (:func:`swarm_options`): GPUs as N of the nodes' generic resource ``[swarm] gpu_resource``,
  shared memory as a tmpfs on /dev/shm, the same mounts and caches. ``ipc``, ``ports``, and GPUs by id or "all"
  have no swarm form and are refused before the service is made (:func:`check_swarm`).
* The time limit is kept by the entry point in the container (``protocol.ENV_MAX_RUNTIME``), so it holds for
  detached runs and swarm tasks that nobody watches.

Cache volumes are named ``PROJECT-cache-NAME`` and labelled with the project and the cache's name, so they
persist between this project's runs on a host and ``doit cleanup caches=1`` removes this project's only.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from tg_pipeline.config.schema import RunSettings
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.config.values import parse_gpus, parse_mount, parse_port, read_env_file
from tg_pipeline.errors import ConfigError, PipelineError
from tg_pipeline.runtime import protocol

CACHE_LABEL = f'{protocol.LABEL}.cache'
TOOLKIT_URL = 'https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html'
GPU_REFUSALS = ('could not select device driver', 'nvidia-container-cli', 'nvidia-container-runtime')


def env_file_values(job, root: Path) -> tuple:
    """(name, value) of a JobConfig's env files, read now, relative to the project folder ``root``."""
    env = {}
    for name in job.run.env_files:
        path = Path(root, name)
        try:
            env.update(read_env_file(path))
        except FileNotFoundError:
            raise ConfigError(f'env file {path} does not exist', key=f'jobs.{job.name}.env_files',
                              hint=f'create it (NAME=value lines), or drop {name!r} from env_files') from None
        except (OSError, ValueError) as e:
            raise ConfigError(f'env file {e}', key=f'jobs.{job.name}.env_files',
                              hint='write one NAME=value per line (# starts a comment)') from None
    return tuple(env.items())


def environment(settings: RunSettings) -> dict[str, str]:
    """What the container's environment gets from the run settings besides env values (the time limit)."""
    return {protocol.ENV_MAX_RUNTIME: f'{settings.max_runtime_s:g}'} if settings.max_runtime_s else {}


def labels(settings: RunSettings) -> dict[str, str]:
    found = {'gpus': settings.gpus} if parse_gpus(settings.gpus).wanted else {}
    if settings.max_runtime_s:
        found['max_runtime_s'] = f'{settings.max_runtime_s:g}'
    return {f'{protocol.LABEL}.{k}': v for k, v in found.items()}


def cache_volume(project: str, name: str) -> str:
    return f'{project}-cache-{name}'


def _bind_and_cache_mounts(res: RunSettings, project: str) -> list:
    from docker.types import Mount
    mounts = [Mount(m.container, m.host, type='bind', read_only=m.read_only) for m in map(parse_mount, res.mounts)]
    for name, path in res.caches.items():
        mounts.append(Mount(path, cache_volume(project, name), type='volume',
                            labels={f'{protocol.LABEL}.project': project, CACHE_LABEL: name}))
    return mounts


def container_options(res: RunSettings, project: str, gpu_ids: tuple = ()) -> tuple[dict, dict]:
    """(create_container kwargs, create_host_config kwargs) for these resources; ``gpu_ids``: the GPUs handed to
    the run (:mod:`.allocation`), asked for by id instead of ``gpus``."""
    from docker.types import DeviceRequest
    create: dict[str, Any] = {}
    host: dict[str, Any] = {}
    gpus = parse_gpus(res.gpus)
    if gpu_ids:
        host['device_requests'] = [DeviceRequest(device_ids=list(gpu_ids), capabilities=[['gpu']])]
    elif gpus.wanted:
        host['device_requests'] = [DeviceRequest(count=gpus.count, device_ids=list(gpus.device_ids) or None,
                                                 capabilities=[['gpu']])]
    if res.shm_gb:
        host['shm_size'] = int(res.shm_gb * 1024 ** 3)
    if res.ipc:
        host['ipc_mode'] = res.ipc
    if res.mounts or res.caches:
        host['mounts'] = _bind_and_cache_mounts(res, project)
    if res.ports:
        ports = [parse_port(p) for p in res.ports]
        create['ports'] = sorted({p.port for p in ports})
        host['port_bindings'] = {p.port: (p.ip, p.host_port) for p in ports}
    return create, host


@contextlib.contextmanager
def _looker(host):
    """``exists(path)`` on the host: True, False, or None where the login user may not look (the engine may).
    On a remote host over one sftp session of the run's connection, closed afterwards (sshd allows 10
    sessions per connection); a shell's ``test -e`` where the host has no sftp."""
    if not host.remote:
        yield os.path.exists
        return
    try:
        sftp = host.connection.client.open_sftp()
    except Exception:  # noqa: BLE001 - no sftp subsystem there
        yield lambda path: _shell_exists(host.connection, path)
        return
    try:
        yield lambda path: _sftp_exists(sftp, path)
    finally:
        sftp.close()


def _sftp_exists(sftp, path: str) -> bool | None:
    try:
        sftp.stat(path)
        return True
    except FileNotFoundError:
        return False
    except PermissionError:
        return None


def _shell_exists(connection, path: str) -> bool:
    import shlex
    return connection.run(f'test -e {shlex.quote(path)}', hide=True, warn=True, in_stream=False).exited == 0


def where_text(host) -> str:
    """The host for people: ``this machine`` or ``user@host:port``."""
    return host.name.split(' ', 1)[1] if host.remote else 'this machine'


def check_host_paths(res: RunSettings, host, job: str) -> None:
    """Every mount's host path exists on the host the job runs on (before the container is made)."""
    if not res.mounts:
        return
    with _looker(host) as exists:
        missing = [(text, parse_mount(text)) for text in res.mounts if exists(parse_mount(text).host) is False]
    if not missing:
        return
    text, mount = missing[0]
    login, _, port = where_text(host).rpartition(':')
    ssh = '' if port == '22' else f' -e "ssh -p {port}"'
    copy = f'rsync -a{ssh} FOLDER/ {login}:{mount.host}/' if host.remote else f'mkdir -p {mount.host}'
    raise PipelineError(f'job {job} mounts {mount.host} (mounts entry "{text}"), which does not exist on '
                        f'{where_text(host)}',
                        hint=f'put the data there ({copy}), or fix the host path in mounts of [jobs.{job}] '
                             f'or [run] (on the command line: mounts=HOST_PATH:CONTAINER_PATH)')


def ensure_caches(client, res: RunSettings, project: str) -> None:
    """The project's cache volumes, made (labelled) when the host has none yet."""
    for name in res.caches:
        client.api.create_volume(cache_volume(project, name),
                                 labels={f'{protocol.LABEL}.project': project, CACHE_LABEL: name})


def start_problem(error, host, job: str, gpus: str) -> PipelineError | None:
    """The paragraph for an engine's refusal to start a run, when it is about these resources."""
    text = str(getattr(error, 'explanation', None) or error)
    if gpus and any(marker in text for marker in GPU_REFUSALS):
        where = where_text(host)
        login = f' (ssh -p {where.rpartition(":")[2]} {where.rpartition(":")[0]})' if host.remote else ''
        return PipelineError(
            f'job {job} asks for GPUs (gpus = "{gpus}"), and the Docker engine on {where} cannot give any: {text}',
            hint=f'install the NVIDIA Container Toolkit on {where}{login} and restart its Docker engine: after adding '
                 f'NVIDIA\'s apt repository ({TOOLKIT_URL}), sudo apt-get install -y nvidia-container-toolkit && '
                 f'sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker; '
                 f'or run without GPUs: gpus=0')
    if 'bind source path does not exist' in text:
        return PipelineError(f'job {job}: a mounted host path does not exist on {where_text(host)}: {text}',
                             hint=f'put the data there, or fix mounts of [jobs.{job}] or [run]')
    return None


# --- cleanup -------------------------------------------------------------------------------------------
def remove_caches(engines: list, project: str, host: str, console: Console = CONSOLE) -> list[str]:
    """Remove this project's cache volumes from ``engines``; a volume a container still uses is kept."""
    import docker
    removed = []
    for engine in engines:
        found = engine.api.volumes(filters={'label': [f'{protocol.LABEL}.project={project}', CACHE_LABEL]})
        for volume in (found or {}).get('Volumes') or []:
            try:
                engine.api.remove_volume(volume['Name'])
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as e:
                console.print(f'kept cache volume {volume["Name"]}: {e.explanation or e}')
                continue
            removed.append(volume['Name'])
            console.print(f'removed cache volume {volume["Name"]}')
    console.print(f'{len(removed)} cache volume(s) of project {project} removed from {host}')
    return removed
