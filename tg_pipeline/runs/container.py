"""Container runs: the job's image run by one Docker engine (local, or a remote one over SSH).

The container is created from the image id the build produced (never from a tag another build may have
re-pointed), with env values as Docker API JSON (never a shell or a command line), limits, and labels
that carry the run's identity (:meth:`RunSpec.labels`). Its output is read from the container log from
the first byte; its run folder (return value, traceback, output/) is copied back when it ends.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile


from tg_pipeline.compat.docker import docker
from tg_pipeline.compat.docker import log_frames
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.runs.model import LABEL, RunHandle, RunResult, RunSpec, new_run_id, strip_labels
from tg_pipeline.runs.backend import lost_connection_means_detached
from tg_pipeline.runs.output import TAIL_BYTES
from tg_pipeline.runs import resources
from tg_pipeline.hosts.engine import engine_started_at
from tg_pipeline.runs.records import engine_restarted_under, exit_status, parse_time, result_not_kept, time_limit_hit
from tg_pipeline.runs.results import read_text
from tg_pipeline.runtime import protocol

SWARM_TASK_LABEL = 'com.docker.swarm.task.id'


def container_name(spec: RunSpec, run_id: str) -> str:
    variant = '' if spec.variant is None else f'-v{spec.variant}'
    return re.sub(r'[^a-zA-Z0-9_.-]', '-', f'tg-{spec.package}-{spec.version}-{run_id}{variant}')


def limits(cpu: float, memory_gb: float) -> dict:
    kwargs = {}
    if cpu:
        kwargs['nano_cpus'] = int(cpu * 1e9)
    if memory_gb:
        kwargs['mem_limit'] = int(memory_gb * 1024 ** 3)
        kwargs['memswap_limit'] = kwargs['mem_limit']  # no swap: the limit is the limit
    return kwargs


def saved_tail(paths, handle: RunHandle) -> str:
    """The end of what the run printed (stdout, then stderr), as saved here: for error messages."""
    if paths is None:
        return ''
    parts = []
    for path in (paths.out(handle.run_id), paths.err(handle.run_id)):
        if path.exists():
            with open(path, 'rb') as file:
                file.seek(max(0, path.stat().st_size - TAIL_BYTES))
                parts.append(file.read())
    return b''.join(parts).decode('utf-8', 'replace')


@contextlib.contextmanager
def archive(client, ref: str, path: str):
    """``path`` in the container as an open tar file, spooled to disk (never whole in memory); None when the
    container has nothing there."""
    try:
        stream, _ = client.api.get_archive(ref, path)
    except docker.errors.NotFound:
        yield None
        return
    with tempfile.TemporaryFile() as spool:
        for chunk in stream:
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool) as tar:
            yield tar


def same_bytes(path, digest: dict | None) -> bool:
    """Whether the file ``path`` has the size and sha256 that ``digest`` records."""
    if not digest or not path.exists() or path.stat().st_size != digest.get('size'):
        return False
    found = hashlib.sha256()
    with open(path, 'rb') as file:
        for chunk in iter(lambda: file.read(1 << 20), b''):
            found.update(chunk)
    return found.hexdigest() == digest.get('sha256')


def read_digest(tar, member) -> dict:
    """The log digest (``protocol.LOG_DIGEST``) in ``tar`` at ``member``; {} when it is no JSON object."""
    try:
        found = json.load(tar.extractfile(member))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _json_object(data: bytes) -> dict:
    try:
        found = json.loads(data)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _reclaim(folder) -> None:
    """Files of a bind-mounted run folder that are not ours (the entry point was killed before it handed them
    over): read access is all we need of them, and root's files are readable; say where they are otherwise."""
    if not hasattr(os, 'getuid') or os.getuid() == 0:
        return
    for path in folder.rglob('*'):
        if not os.access(path, os.R_OK):
            raise PipelineError(f'{path} of the run came back owned by another user and is not readable here',
                                hint=f'make it yours: docker run --rm -v {folder}:/run-folder busybox chown -R '
                                     f'{os.getuid()}:{os.getgid()} /run-folder')


def state_text(attrs: dict) -> tuple[str, bool]:
    state = attrs.get('State') or {}
    if isinstance(state, str):  # a sparse listing
        return state, state == 'running'
    if state.get('Status') in ('running', 'restarting', 'paused'):
        return 'running', True
    if state.get('Status') == 'created':
        return 'created', False
    text = f'exited {state.get("ExitCode")}'
    return (text + ' (OOM killed)' if state.get('OOMKilled') else text), False


def binds_here(client) -> bool:
    """Whether a run folder here can be the container's (a bind mount): the engine listens on a Unix socket of this
    machine (its files are ours; Docker Desktop shares them), and no SELinux would refuse the container them."""
    if not str(getattr(getattr(client, 'api', None), 'base_url', '')).startswith('http+docker://localhost'):
        return False
    try:
        with open('/sys/fs/selinux/enforce') as file:
            return file.read().strip() != '1'
    except OSError:
        return True


def log_copies(paths, run_id: str):
    """The folder here that a local run's LOG_DIR is (the exact copies of its output), beside its run folder."""
    return paths.dir / f'{run_id}.logs'


class ContainerBackend:
    """Runs on one engine; ``host`` is a :class:`~tg_pipeline.hosts.host.Host`. On a local engine the run folder
    and the log copies are bind mounts of their folders here: what a run leaves needs no archive request."""
    kind, noun, streams_to_files, announce_attached, stop_takes_output = 'container', 'run', True, False, False

    def __init__(self, host):
        self.client, self.host, self.where, self.remote = host.docker, host.name, host.where, host.remote
        self.lost = getattr(host, 'lost_reason', lambda: None)
        self.place = host  # its SSH connection reaches the host's files and the containers' network
        self.binds = not self.remote and binds_here(self.client)

    # --- start --------------------------------------------------------------------------------------
    def _folders_here(self, paths, run_id: str, environment: dict) -> list:
        """The bind mounts of the run folder and the log copies (made here now), and the owner to hand them to."""
        if paths is None or not self.binds:
            return []
        folders = ((paths.run_dir(run_id), protocol.RUN_DIR), (log_copies(paths, run_id), protocol.LOG_DIR))
        for folder, _ in folders:
            folder.mkdir(parents=True, exist_ok=True)
        if hasattr(os, 'getuid') and os.getuid() != 0:
            environment[protocol.ENV_HOST_OWNER] = f'{os.getuid()}:{os.getgid()}'
        return [docker.types.Mount(target, str(folder.resolve()), type='bind') for folder, target in folders]

    def prepare(self, spec: RunSpec, environ=None, paths=None) -> RunHandle:
        """Create the container (not started yet); ``paths``: where its run is collected here."""
        run_id = spec.run_id or new_run_id()
        name = container_name(spec, run_id)
        labels = {**spec.labels(run_id, self.where), **resources.labels(spec.run)}
        resources.check_host_paths(spec.run, self.place, spec.job)
        resources.ensure_caches(self.client, spec.run, spec.project)
        create, host_config = resources.container_options(spec.run, spec.project, spec.gpu_ids)
        if spec.run.secret_env:  # their values come on stdin once it starts, then its end (runs/secrets.py)
            create['stdin_open'] = True
        environment = spec.run_environment(run_id, environ)
        here = self._folders_here(paths, run_id, environment)
        if here:
            host_config['mounts'] = [*host_config.get('mounts', []), *here]
        try:
            container = self._create(spec, name, environment, labels, host_config, create)
        except BaseException:
            for mount in here:  # no container: its folders here go too
                shutil.rmtree(mount['Source'], ignore_errors=True)
            raise
        return self._handle(container['Id'], name, labels, 'created', False)

    def _create(self, spec: RunSpec, name: str, environment: dict, labels: dict, host_config: dict, create: dict):
        try:
            return self.client.api.create_container(
                spec.image_id, name=name, environment=environment, labels=labels,
                detach=not spec.run.secret_env,  # not detached: stdin closes after one attach (StdinOnce)
                host_config=self.client.api.create_host_config(
                    init=True, **limits(spec.run.cpu, spec.run.memory_gb), **host_config), **create)
        except docker.errors.ImageNotFound:
            raise PipelineError(f'image {spec.reference or spec.image_id} is not on the {self.host} Docker engine',
                                hint='run the build (and push) tasks first, e.g. doit build_image') from None
        except docker.errors.APIError as e:
            raise PipelineError(f'cannot create the container on the {self.host} engine: {e.explanation or e}') \
                from None
        except KeyboardInterrupt:  # the engine may have made it already
            self._remove_named(name)
            raise

    def start(self, handle: RunHandle, spec: RunSpec | None = None, environ=None) -> RunHandle:
        """Start the prepared container (``spec`` and ``environ`` went into it already); GPUs or a host path the
        engine cannot give are said as such."""
        try:
            if spec is not None and spec.run.secret_env:
                import os
                from tg_pipeline.runs import secrets
                found = secrets.values(spec.run.secret_env, os.environ if environ is None else environ)
                secrets.start_with_secrets(self.client, handle.ref, found)
            else:
                self.client.api.start(handle.ref)
        except docker.errors.APIError as e:
            raise resources.start_problem(e, self.place, handle.job, handle.labels.get('gpus', '')) or e
        return dataclasses.replace(handle, state="running", running=True)

    def start_line(self, handle: RunHandle) -> str:
        return f'Started run {handle.run_id} ({self.host}), container {handle.name}'

    # --- watch --------------------------------------------------------------------------------------
    def watch(self, handle: RunHandle, sink) -> None:
        """Stream the output into ``sink`` until the container ends. A lost connection to a remote engine
        raises :class:`RemoteError` saying the job goes on; Ctrl-C is the caller's."""
        with lost_connection_means_detached(self.remote, self.host, handle,
                                            'the job keeps running there and nothing of it is lost', self.lost):
            for stream, data in log_frames(self.client, handle.ref):
                sink.write(stream, data)
            try:
                self.client.api.wait(handle.ref)
            except docker.errors.NotFound:  # removed under the run: collect says so
                pass

    # --- find ---------------------------------------------------------------------------------------
    def find(self, job: str | None = None, project: str | None = None) -> dict[str, RunHandle]:
        filters = [f'{LABEL}.run_id']
        if job:
            filters.append(f'{LABEL}.job={job}')
        if project:
            filters.append(f'{LABEL}.project={project}')
        found = {}
        for item in self.client.api.containers(all=True, filters={'label': filters}):
            labels = item.get('Labels') or {}
            if SWARM_TASK_LABEL in labels or f'{LABEL}.variants' in labels:
                continue  # a swarm task's container belongs to its service, a sweep's to its sweep (runs.sweep)
            state, running = state_text({'State': item.get('State')})
            name = (item.get('Names') or ['/?'])[0].lstrip('/')
            handle = self._handle(item['Id'], name, labels, state, running)
            if not running:
                handle = self.refresh(handle)
            found[handle.run_id] = handle
        return found

    def refresh(self, handle: RunHandle) -> RunHandle:
        try:
            attrs = self.client.api.inspect_container(handle.ref)
        except docker.errors.NotFound:
            return handle
        state, running = state_text(attrs)
        times = attrs.get('State') or {}
        end = None if running else parse_time(times.get('FinishedAt'))
        return self._handle(handle.ref, handle.name, attrs['Config'].get('Labels'), state, running,
                            parse_time(times.get('StartedAt')), end)

    def _handle(self, ref, name, labels, state, running, start_time=None, end_time=None) -> RunHandle:
        stripped = strip_labels(labels)
        return RunHandle(run_id=stripped.get('run_id', ''), where=self.where, host=self.host, ref=ref, name=name,
                         labels=stripped, state=state, running=running, start_time=start_time, end_time=end_time)

    # --- logs, stop, collect, discard -----------------------------------------------------------------
    def log_chunks(self, handle: RunHandle, stream: int):
        """The bytes the run printed so far on ``stream`` (1 stdout, 2 stderr), from the first, in chunks."""
        for _, data in log_frames(self.client, handle.ref, follow=False, streams=(stream,)):
            yield data

    def stop(self, handle: RunHandle, timeout: int = 10) -> None:
        try:
            self.client.api.stop(handle.ref, timeout=timeout)
        except docker.errors.NotFound:
            pass

    def ended_at(self, handle: RunHandle):
        attrs = self.client.api.inspect_container(handle.ref)
        return parse_time(attrs['State'].get('FinishedAt')) or parse_time(attrs.get('Created'))

    def collect(self, handle: RunHandle, paths, logs_saved: bool = True) -> RunResult:
        """Copy the run folder to ``paths.run_dir(RUN_ID)``, its output to ``RUN_ID.out``/``.err`` byte for byte
        (``logs_saved``: streamed there already, replaced when not exact), write the record, remove the
        container."""
        try:
            attrs = self.client.api.inspect_container(handle.ref)
        except docker.errors.NotFound:
            raise self._vanished(handle, paths) from None
        state = attrs['State']
        run_dir, digest = self._bound_run_dir(handle, paths) or self._copy_run_dir(handle, paths)
        if paths is not None:
            self._save_logs(handle, paths, logs_saved, digest)
        code, signal = exit_status(state.get('ExitCode'), run_dir)
        result = RunResult(run_id=handle.run_id, where=self.where, host=self.host, job=handle.job,
                           module=handle.module, exit_code=code, run_dir=run_dir, output=saved_tail(paths, handle),
                           oom_killed=bool(state.get('OOMKilled')), signal=signal,
                           memory_gb=float(handle.labels.get('memory_gb') or 0),
                           traceback=read_text(run_dir, protocol.TRACEBACK_FILE))
        limit = time_limit_hit(run_dir)
        result.timed_out, result.max_runtime_s = limit is not None, limit or 0
        result.engine_restarted = engine_restarted_under(state, lambda: engine_started_at(self.client))
        if paths is not None:
            paths.write_record(handle.run_id, {
                'run_id': handle.run_id, 'job': handle.job, 'version': handle.version, 'where': self.where,
                'exit_code': code, 'signal': signal, 'oom_killed': result.oom_killed,
                'started_at': state.get('StartedAt'), 'finished': state.get('FinishedAt'),
                'memory_gb': result.memory_gb, 'module': handle.module,
                'project': handle.project, 'owner': handle.owner, 'image': handle.image,
                'started': handle.started, 'timed_out': result.timed_out, 'max_runtime_s': result.max_runtime_s,
                'result_error': result_not_kept(run_dir), 'engine_restarted': result.engine_restarted,
                **({'gpu_ids': handle.label('gpu_ids')} if handle.label('gpu_ids') else {})})
        defer = getattr(self.place, 'defer', None)
        if defer is not None:
            defer(lambda: self.discard(handle))  # the engine removes it while we say how the run went
        else:
            self.discard(handle)
        return result

    def _vanished(self, handle: RunHandle, paths) -> PipelineError:
        """The error (and the record, ``vanished``) of a run whose container is gone before it was collected."""
        kept = ''
        if paths is not None:
            paths.write_record(handle.run_id, {'run_id': handle.run_id, 'job': handle.job, 'version': handle.version,
                                               'where': self.where, 'exit_code': None, 'vanished': True,
                                               'module': handle.module, 'project': handle.project,
                                               'owner': handle.owner, 'started': handle.started})
            if paths.out(handle.run_id).exists():
                kept = f'; what it printed while it was followed is in {paths.out(handle.run_id)}'
        return PipelineError(f'the container of run {handle.run_id} vanished from the {self.host} engine before it '
                             f'was collected (removed by someone: docker rm, a prune; or the engine lost it): its '
                             f'return value and output folder are gone{kept}',
                             hint=f'run it again: doit run_{self.where} job={handle.job}')

    def _save_logs(self, handle: RunHandle, paths, logs_saved: bool, digest: dict | None = None) -> None:
        """RUN_ID.out / .err as the job wrote them: the entry point's copies (``protocol.LOG_DIR``) unless what
        was saved from the engine's log is the same (their digest says: ``digest``, as the run folder brought it,
        else fetched from LOG_DIR); the engine's log where the container has no copies (an image built before they
        were made, a job that never started)."""
        paths.dir.mkdir(parents=True, exist_ok=True)
        if logs_saved and digest is None:
            digest = self._log_digest(handle, paths)
        copies = log_copies(paths, handle.run_id)
        for stream, name in zip((1, 2), protocol.LOG_STREAMS):
            path = paths.out(handle.run_id) if stream == 1 else paths.err(handle.run_id)
            if logs_saved and same_bytes(path, (digest or {}).get(name)):
                continue
            if (copies / name).is_file():  # the local run's copy, here already
                os.replace(copies / name, path)
                continue
            if self._fetch_file(handle, f'{protocol.LOG_DIR}/{name}', path):
                continue
            if not logs_saved:
                with open(path, 'wb') as file:  # chunk by chunk: a log may be larger than this machine's memory
                    for chunk in self.log_chunks(handle, stream):
                        file.write(chunk)
        shutil.rmtree(copies, ignore_errors=True)

    def _log_digest(self, handle: RunHandle, paths=None) -> dict:
        if paths is not None and (log_copies(paths, handle.run_id) / protocol.LOG_DIGEST).is_file():
            with open(log_copies(paths, handle.run_id) / protocol.LOG_DIGEST, 'rb') as file:
                return _json_object(file.read())
        with archive(self.client, handle.ref, f'{protocol.LOG_DIR}/{protocol.LOG_DIGEST}') as tar:
            member = tar and next((m for m in tar if m.isfile()), None)
            return read_digest(tar, member) if member else {}

    def _fetch_file(self, handle: RunHandle, source: str, target) -> bool:
        """The container's file ``source`` to ``target``; False when it has none."""
        with archive(self.client, handle.ref, source) as tar:
            member = tar and next((m for m in tar if m.isfile()), None)
            if not member:
                return False
            with tar.extractfile(member) as data, open(target, 'wb') as file:
                shutil.copyfileobj(data, file, 1 << 20)
        return True

    def _bound_run_dir(self, handle: RunHandle, paths) -> tuple | None:
        """(the run folder, the log digest it holds) when the run wrote it here through its bind mount (None: not
        bound, or nothing arrived here: then the engine's archive is asked, as for a remote run)."""
        if paths is None or not self.binds:
            return None
        target = paths.run_dir(handle.run_id)
        if not (target / protocol.EXIT_FILE).is_file():
            return None
        _reclaim(target)
        digest_file = target / protocol.RUN_LOG_DIGEST
        digest = _json_object(digest_file.read_bytes()) if digest_file.is_file() else None
        with contextlib.suppress(OSError):
            digest_file.unlink()
        return target, digest

    def _copy_run_dir(self, handle: RunHandle, paths) -> tuple:
        """(the run folder copied here or None, the log digest it brought or None: ``protocol.RUN_LOG_DIGEST``,
        read, not copied)."""
        if paths is None:
            return None, None
        target = paths.run_dir(handle.run_id)
        with archive(self.client, handle.ref, protocol.RUN_DIR) as tar:
            if tar is None:
                return None, None  # the job died before the entry point made it
            target.mkdir(parents=True, exist_ok=True)
            members, digest = [], None
            for member in tar:
                head, _, rest = member.name.partition('/')
                if rest == protocol.RUN_LOG_DIGEST and member.isfile():
                    digest = read_digest(tar, member)
                elif rest and (member.isfile() or member.isdir()):
                    member.name = rest
                    members.append(member)
            extra = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
            tar.extractall(target, members=members, **extra)
        return target, digest

    def discard(self, handle: RunHandle, stop: bool = False) -> None:
        try:
            if stop:
                self.client.api.stop(handle.ref, timeout=5)
            self.client.api.remove_container(handle.ref, force=True)
        except docker.errors.NotFound:
            pass

    # --- reaching a running run ---------------------------------------------------------------------
    @staticmethod
    def refuse_reach(what: str, job: str, run_id: str = '') -> None:
        """exec and forward reach a container run: nothing to refuse."""

    def exec(self, handle: RunHandle, command: str, console: Console = CONSOLE) -> int:
        from tg_pipeline.runs import reach
        return reach.exec_in_container(self.client, handle, command, console)

    def forward(self, handle: RunHandle, port: int, local_port: int, console: Console = CONSOLE) -> None:
        from tg_pipeline.runs import reach
        reach.forward_to_container(self, handle, port, local_port, console)

    def _remove_named(self, name: str) -> None:
        try:
            self.client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass


