"""What the fake engine keeps: images, containers (each running a :class:`Program`), registries.

Plain data with the engine's JSON shapes (inspect, list summaries); the endpoints that change them
are in :mod:`fakes.containers` and :mod:`fakes.images`.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

RUN_DIR = '/tg_pipeline/run'
STDOUT, STDERR = 1, 2
ZERO_TIME = '0001-01-01T00:00:00Z'


class FakeEngineError(AssertionError):
    """The fake cannot do what was asked (a route it does not serve, a wait that would never end)."""


class FakeEngineBlocked(FakeEngineError):
    """A real engine would block here forever (wait / follow on a container that runs until stopped)."""


def digest(*parts) -> str:
    return hashlib.sha256('\0'.join(map(str, parts)).encode()).hexdigest()


def rfc3339(moment: datetime.datetime | None) -> str:
    """The engine's time format (nanoseconds, UTC, 'Z'); the zero time for never."""
    if moment is None:
        return ZERO_TIME
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f') + '000Z'


def normalize(reference: str) -> str:
    """``name:tag`` as the engine lists it: Docker Hub prefixes dropped, ``:latest`` added."""
    for prefix in ('docker.io/library/', 'index.docker.io/library/', 'docker.io/', 'index.docker.io/'):
        if reference.startswith(prefix):
            reference = reference[len(prefix):]
            break
    if '@' in reference:
        return reference
    name = reference.rsplit('/', 1)[-1]
    return reference if ':' in name else reference + ':latest'


def split_reference(reference: str) -> tuple[str, str, str]:
    """(registry host, repository path, tag) of a normalized reference; host 'docker.io' for the Hub."""
    repository, _, tag = normalize(reference).rpartition(':')
    first, _, rest = repository.partition('/')
    if rest and ('.' in first or ':' in first or first == 'localhost'):
        return first, rest, tag
    return 'docker.io', repository if '/' in repository else 'library/' + repository, tag


def frame(stream: int, data: bytes) -> bytes:
    """One frame of a non-TTY container's output: 8-byte header (stream, 0, 0, 0, big-endian length)."""
    return struct.pack('>BxxxL', stream, len(data)) + data


def path_stat(name: str, size: int, is_dir: bool, moment: datetime.datetime) -> str:
    """The ``X-Docker-Container-Path-Stat`` header: base64 of the path's stat as JSON."""
    mode = (1 << 31 | 0o755) if is_dir else 0o644  # Go's os.ModeDir bit for folders
    stat = {'name': name, 'size': size, 'mode': mode, 'mtime': rfc3339(moment).replace('000Z', 'Z'),
            'linkTarget': ''}
    return base64.b64encode(json.dumps(stat).encode()).decode()


def tar_of(files: dict[str, bytes], path: str, moment: datetime.datetime) -> bytes | None:
    """The archive ``GET /containers/{id}/archive?path=`` returns: ``path`` as its base name, with
    everything under it; None when nothing is there."""
    path = path.rstrip('/') or '/'
    base = path.rsplit('/', 1)[-1]
    entries: dict[str, bytes | None] = {}
    for name, data in sorted(files.items()):
        if name == path:
            entries[base] = data
        elif name.startswith(path + '/'):
            parts = name[len(path) + 1:].split('/')
            for depth in range(len(parts)):
                entries.setdefault('/'.join([base, *parts[:depth]]), None)
            entries['/'.join([base, *parts])] = data
    if not entries:
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(entries.items()):
            info = tarfile.TarInfo(name)
            info.mtime = int(moment.timestamp())
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Program:
    """What a container of an image does once started (see ``FakeEngine.program``)."""
    stdout: bytes = b''
    stderr: bytes = b''
    output: list | None = None  # [(1 or 'stdout' / 2 or 'stderr', bytes), ...]: frames in this order
    exit_code: int = 0
    files: dict | Path | None = None  # under RUN_DIR (relative keys) or absolute paths; or a folder
    oom: bool = False
    run_until_stopped: bool = False
    start_error: str | None = None  # POST /start answers 500 with this message
    break_stream: tuple | None = None  # (n, exception): a followed log stream raises it after n frames
    stop_exit_code: int = 143  # SIGTERM through the init process

    def frames(self) -> list[tuple[int, bytes]]:
        if self.output is not None:
            kinds = {'stdout': STDOUT, 'stderr': STDERR, STDOUT: STDOUT, STDERR: STDERR}
            return [(kinds[kind], data) for kind, data in self.output if data]
        return ([(STDOUT, line) for line in self.stdout.splitlines(keepends=True)]
                + [(STDERR, line) for line in self.stderr.splitlines(keepends=True)])

    def file_map(self) -> dict[str, bytes]:
        """Absolute path -> content of the files the job leaves."""
        if self.files is None:
            return {}
        if isinstance(self.files, (str, Path)):
            root = Path(self.files)
            return {f'{RUN_DIR}/{p.relative_to(root).as_posix()}': p.read_bytes()
                    for p in sorted(root.rglob('*')) if p.is_file()}
        return {(k if k.startswith('/') else f'{RUN_DIR}/{k}'): (v.encode() if isinstance(v, str) else v)
                for k, v in self.files.items()}


@dataclass
class FakeImage:
    id: str  # 'sha256:<64 hex>'
    tags: list[str]
    labels: dict
    layers: list[str]
    created: datetime.datetime
    env: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    digests: list[str] = field(default_factory=list)  # 'repo@sha256:...'
    layer_size: int = 1_000_000

    def inspect(self) -> dict:
        return {'Id': self.id, 'RepoTags': list(self.tags), 'RepoDigests': list(self.digests), 'Parent': '',
                'Comment': '', 'Created': rfc3339(self.created), 'DockerVersion': '20.10.24',
                'Author': '', 'Architecture': 'amd64', 'Os': 'linux', 'Size': self.size,
                'Config': {'Env': list(self.env), 'Cmd': self.cmd, 'Labels': dict(self.labels) or None},
                'RootFS': {'Type': 'layers', 'Layers': list(self.layers)}, 'Metadata': {'LastTagTime': ''}}

    def summary(self, containers: int = 0) -> dict:
        return {'Id': self.id, 'ParentId': '', 'RepoTags': list(self.tags) or ['<none>:<none>'],
                'RepoDigests': list(self.digests), 'Created': int(self.created.timestamp()), 'Size': self.size,
                'SharedSize': -1, 'VirtualSize': self.size, 'Labels': dict(self.labels) or None,
                'Containers': containers}

    @property
    def size(self) -> int:
        return self.layer_size * len(self.layers)


@dataclass
class FakeContainer:
    id: str
    name: str
    image_ref: str  # as given at create
    image: FakeImage
    body: dict  # the create request's JSON, verbatim
    program: Program
    created: datetime.datetime
    status: str = 'created'  # created, running, exited
    exit_code: int = 0
    oom_killed: bool = False
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # absolute path -> content: what get_archive sees

    @property
    def labels(self) -> dict:
        """The image's labels under the container's own, as the engine merges them."""
        return {**self.image.labels, **(self.body.get('Labels') or {})}

    @property
    def host_config(self) -> dict:
        return self.body.get('HostConfig') or {}

    def start(self, now: datetime.datetime) -> None:
        self.status, self.started_at, self.finished_at = 'running', now, None
        self.exit_code, self.oom_killed = 0, False

    def end(self, now: datetime.datetime, code: int | None = None) -> None:
        """The job ends: by itself (``code`` None: as programmed) or by a signal's exit code."""
        oom = code is None and self.program.oom
        self.status, self.finished_at, self.oom_killed = 'exited', now, oom
        self.exit_code = 137 if oom else self.program.exit_code if code is None else code
        self.files.update(self.program.file_map())

    def inspect(self) -> dict:
        config = {k: v for k, v in self.body.items() if k not in ('HostConfig', 'NetworkingConfig')}
        env = {e.split('=', 1)[0]: e for e in [*self.image.env, *(self.body.get('Env') or [])]}
        config.update({'Hostname': self.id[:12], 'Image': self.image_ref, 'Labels': self.labels,
                       'Env': list(env.values()), 'Cmd': self.body.get('Cmd') or self.image.cmd,
                       'Tty': bool(self.body.get('Tty'))})
        running = self.status == 'running'
        return {'Id': self.id, 'Created': rfc3339(self.created), 'Path': (config['Cmd'] or [''])[0],
                'Args': (config['Cmd'] or [''])[1:], 'Image': self.image.id, 'Name': '/' + self.name,
                'State': {'Status': self.status, 'Running': running, 'Paused': False, 'Restarting': False,
                          'OOMKilled': self.oom_killed, 'Dead': False, 'Pid': 4242 if running else 0,
                          'ExitCode': self.exit_code, 'Error': '', 'StartedAt': rfc3339(self.started_at),
                          'FinishedAt': rfc3339(self.finished_at)},
                'RestartCount': 0, 'Driver': 'overlay2', 'Platform': 'linux', 'HostConfig': self.host_config,
                'Config': config, 'Mounts': [], 'NetworkSettings': {'Networks': {}}}

    def summary(self) -> dict:
        cmd = self.body.get('Cmd') or self.image.cmd or []
        text = {'created': 'Created', 'running': 'Up Less than a second'}.get(
            self.status, f'Exited ({self.exit_code}) Less than a second ago')
        return {'Id': self.id, 'Names': ['/' + self.name], 'Image': self.image_ref, 'ImageID': self.image.id,
                'Command': ' '.join(cmd), 'Created': int(self.created.timestamp()), 'State': self.status,
                'Status': text, 'Labels': self.labels, 'Ports': [], 'Mounts': [],
                'HostConfig': {'NetworkMode': self.host_config.get('NetworkMode', 'default')},
                'NetworkSettings': {'Networks': {}}}


@dataclass
class FakeRegistry:
    """A registry as the engine reaches it for push / pull / distribution inspect."""
    host: str
    credentials: tuple[str, str] | None = None  # a login it requires, or None for an open registry
    unreachable: bool = False
    insecure_http: bool = False  # it speaks plain HTTP and the engine does not allow that
    error: str | None = None  # every push/pull fails with this (a stream error event) ...
    error_status: int | None = None  # ... or, when set, with this HTTP status at once
    manifests: dict[str, tuple[str, FakeImage]] = field(default_factory=dict)  # 'repo:tag' -> (digest, image)
    blobs: set[str] = field(default_factory=set)

    def refusal(self, auth: dict | None) -> str | None:
        """Why this registry refuses the caller now (unreachable, login), or None."""
        if self.unreachable:
            return f'Get "https://{self.host}/v2/": dial tcp 192.0.2.1:5000: connect: connection refused'
        if self.insecure_http:
            return f'Get "https://{self.host}/v2/": http: server gave HTTP response to HTTPS client'
        if self.credentials is None:
            return None
        if not auth or not auth.get('username'):
            return 'no basic auth credentials'
        if (auth.get('username'), auth.get('password')) != tuple(self.credentials):
            return 'unauthorized: authentication required'
        return None
