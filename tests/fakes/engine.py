"""FakeEngine: a stateful, in-memory Docker Engine (API 1.41) under a real ``docker.DockerClient``.

Only the lowest level is fake: a ``requests`` transport adapter (:mod:`fakes.wire`) mounted on the
client's ``APIClient`` answers each request from the state kept here. docker-py builds every
request, maps every error (``NotFound``, ``ImageNotFound``, ``APIError`` with the engine's
``explanation``) and makes every model (``Container``, ``Image``) for real. No socket, no thread,
no engine: a request the fake does not serve raises :class:`FakeEngineError`.

Programming it::

    engine = FakeEngine()
    client = engine.client()                     # a real docker.DockerClient
    engine.add_image('base:1', labels={'a': 'b'})
    engine.program('job:1', stdout=b'hi\\n', stderr=b'warn\\n', exit_code=0,
                   files={'result.pkl': pickle.dumps(42)}, oom=False, run_until_stopped=False)
    engine.fail_build(tag='job:2', output=['ERROR: No matching distribution found for x'])
    engine.registry('localhost:5000', credentials=('user', 'pw'))   # or unreachable=True, error=...
    engine.swarm(nodes=2, cpus=2, memory_gb=4)   # a swarm manager: nodes, services, tasks, service logs
    engine.program_tasks('reg/job@sha256:...', [Program(stdout=b'slot 0\n'), Program(exit_code=1)])

A container runs the program of its image (by the reference it was created with, its image id,
or any tag of its image): ``start`` makes it running with its whole output already printed; it
exits (as programmed: exit code, OOM) once a ``wait`` or a followed ``logs`` stream reaches its
end, or at :meth:`FakeEngine.finish`; with ``run_until_stopped`` only ``stop``/``kill``/forced
removal end it (a wait or follow on it raises :class:`FakeEngineBlocked` instead of hanging).
The programmed ``files`` appear under ``/tg_pipeline/run`` once it exited.

Asserting: ``engine.calls`` holds every request as a :class:`fakes.wire.Call` (method, path without
the version prefix, params, body as decoded JSON); ``engine.last('POST', '/containers/create')``
and ``engine.find('POST', '/containers/*/stop')`` pick them. State: ``engine.images``,
``engine.containers`` (id -> FakeContainer, with the create body verbatim), ``engine.removed``,
``engine.builds``, ``engine.registries``, ``engine.services`` (id -> :class:`fakes.swarm.FakeService`,
with its tasks), ``engine.removed_services``, ``engine.volumes`` (:mod:`fakes.volumes`). A service's tasks have
run as soon as it is created.

Private docker-py names the fake had to satisfy (our ``runs.container.output_stream`` calls
``api._get``, ``api._url``, ``api._raise_for_status``, ``api._get_raw_response_socket`` and
``api._disable_socket_timeout``; docker-py's own stream helpers reach further):

- ``response.raw._fp.fp.raw``: ``_get_raw_response_socket`` takes it as the socket and sets
  ``._response`` on it; here it is :class:`fakes.wire.EngineSide` (a RawIOBase under a real
  ``io.BufferedReader`` under a real ``http.client.HTTPResponse`` under a real ``urllib3.HTTPResponse``).
- ``settimeout`` / ``gettimeout`` on that object (and a missing ``_sock``): ``_disable_socket_timeout``.
- ``response.raw._fp.chunked`` and ``response.raw._fp.chunk_left``: ``_stream_helper`` (build, push,
  pull streams); real ``http.client`` attributes, since streamed replies are sent chunked.
- ``api._version``: :meth:`FakeEngine.client` sets it itself (after ``_retrieve_server_version`` for
  ``version='auto'``), since an APIClient asks a real engine its version before any adapter can be mounted.
- ``attach`` is not served: docker-py reads it with ``select.poll`` on the socket's file descriptor.

docker-py still reads the user's ``~/.docker/config.json`` (or ``$DOCKER_CONFIG``) for registry
logins, as it does with a real engine; the fake only records the X-Registry-Auth header it gets.
"""
from __future__ import annotations

import datetime
import fnmatch
import re

import docker

from .containers import Abort, ContainerRoutes
from .images import BuildFailure, ImageRoutes
from .swarm import FakeService, SwarmRoutes, node
from .volumes import VolumeRoutes
from .state import (FakeContainer, FakeEngineBlocked, FakeEngineError, FakeImage, FakeRegistry, Program,
                        digest, normalize, split_reference)
from .wire import API_VERSION, Call, FakeAdapter, Reply

__all__ = ['FakeEngine', 'FakeEngineError', 'FakeEngineBlocked', 'Program', 'FakeContainer', 'FakeImage',
           'FakeRegistry', 'Call']

ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in [
    ('GET', r'/_ping', 'ping'), ('HEAD', r'/_ping', 'ping'), ('GET', r'/version', 'version'),
    ('GET', r'/info', 'info'),
    ('GET', r'/images/json', 'images_list'), ('POST', r'/build', 'image_build'),
    ('POST', r'/images/create', 'image_pull'), ('GET', r'/distribution/(.+)/json', 'distribution_inspect'),
    ('POST', r'/images/(.+)/push', 'image_push'), ('POST', r'/images/(.+)/tag', 'image_tag'),
    ('GET', r'/images/(.+)/json', 'image_inspect'), ('DELETE', r'/images/(.+)', 'image_remove'),
    ('GET', r'/images/(.+)/history', 'image_history'), ('POST', r'/images/load', 'image_load'),
    ('POST', r'/containers/create', 'container_create'), ('GET', r'/containers/json', 'container_list'),
    ('GET', r'/containers/([^/]+)/json', 'container_inspect'),
    ('POST', r'/containers/([^/]+)/start', 'container_start'),
    ('POST', r'/containers/([^/]+)/wait', 'container_wait'),
    ('POST', r'/containers/([^/]+)/stop', 'container_stop'),
    ('POST', r'/containers/([^/]+)/kill', 'container_kill'),
    ('GET', r'/containers/([^/]+)/logs', 'container_logs'),
    ('GET', r'/containers/([^/]+)/archive', 'container_archive'),
    ('DELETE', r'/containers/([^/]+)', 'container_remove'),
    ('GET', r'/nodes', 'node_list'), ('POST', r'/services/create', 'service_create'),
    ('GET', r'/services', 'service_list'), ('GET', r'/services/([^/]+)/logs', 'service_logs'),
    ('GET', r'/services/([^/]+)', 'service_inspect'), ('DELETE', r'/services/([^/]+)', 'service_remove'),
    ('GET', r'/tasks', 'task_list'),
    ('POST', r'/volumes/create', 'volume_create'), ('GET', r'/volumes', 'volume_list'),
    ('DELETE', r'/volumes/([^/]+)', 'volume_remove'),
    ('GET', r'/networks', 'network_list'),
    ('POST', r'/secrets/create', 'secret_create'), ('GET', r'/secrets', 'secret_list'),
    ('DELETE', r'/secrets/([^/]+)', 'secret_remove'),
]]


class FakeEngine(ContainerRoutes, ImageRoutes, SwarmRoutes, VolumeRoutes):
    """An in-memory engine; see the module docstring for programming it and asserting on it."""

    def __init__(self, clock=None, api_versions: tuple[str, str] = ('1.12', API_VERSION)):
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.api_versions = api_versions  # (lowest, highest) it serves; others refused as a real engine does
        self.images: dict[str, FakeImage] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.removed: list[FakeContainer] = []
        self.registries: dict[str, FakeRegistry] = {}
        self.programs: dict[str, Program] = {}
        self.default_program = Program()
        self.build_failures: list[BuildFailure] = []
        self.builds: list = []
        self.calls: list[Call] = []
        self.counter = 0
        self.nodes: list[dict] | None = None  # a swarm manager's nodes (see swarm())
        self.services: dict[str, FakeService] = {}
        self.removed_services: list[FakeService] = []
        self.task_programs: dict[str, list[Program]] = {}
        self.volumes: dict[str, dict] = {}
        self.started = self.clock()  # when the engine (re)started: its bridge network's creation time
        self.secrets: dict[str, dict] = {}  # a swarm manager's secrets: id -> {'ID', 'Spec': {Name, Labels, Data}}

    # -- the client -------------------------------------------------------------------------------

    def client(self, version: str = API_VERSION) -> docker.DockerClient:
        """A real DockerClient whose every request this engine answers (``version='auto'`` asks it)."""
        client = docker.DockerClient(base_url='tcp://fake-engine:2375', version=API_VERSION)
        adapter = FakeAdapter(self.handle)
        for prefix in ('http://', 'https://', 'http+docker://'):
            client.api.mount(prefix, adapter)
        if version == 'auto':
            client.api._version = client.api._retrieve_server_version()
        elif version != API_VERSION:
            client.api._version = version
        return client

    def handle(self, call: Call) -> Reply:
        self.calls.append(call)
        refused = self.refuse_version(call.version)
        if refused:
            return refused
        for method, pattern, handler in ROUTES:
            match = pattern.fullmatch(call.path)
            if match and call.method == method:
                try:
                    return getattr(self, handler)(call, *match.groups())
                except Abort as abort:
                    return abort.reply
        raise FakeEngineError(f'the fake engine does not serve {call.method} {call.path}')

    def now(self) -> datetime.datetime:
        return self.clock()

    def refuse_version(self, version: str | None) -> Reply | None:
        """Docker's answer to a request in an API version it does not serve (e.g. Docker 29: below 1.44)."""
        low, high = self.api_versions
        number = (lambda v: tuple(int(p) for p in v.split('.')))
        if version is None or number(low) <= number(version) <= number(high):
            return None
        if number(version) < number(low):
            return Reply.error(400, f'client version {version} is too old. Minimum supported API version is {low}, '
                                    'please upgrade your client to a newer version')
        return Reply.error(400, f'client version {version} is too new. Maximum supported API version is {high}')

    # -- programming ------------------------------------------------------------------------------

    def add_image(self, tags=None, labels: dict | None = None, layers: int | list = 2, env=None, cmd=None,
                  image_id: str | None = None) -> FakeImage:
        """An image as if built or pulled: ``tags`` a reference or a list of them (none: dangling)."""
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        self.counter += 1
        seed = digest('image', self.counter, tags)
        if isinstance(layers, int):
            layers = ['sha256:' + digest('layer', seed, n) for n in range(layers)]
        image = self.store_image(FakeImage(image_id or 'sha256:' + seed, [], dict(labels or {}), list(layers),
                                           self.now(), list(env or []), cmd))
        for tag in tags:
            self.tag_image(image, tag)
        return image

    def store_image(self, image: FakeImage) -> FakeImage:
        """Keep ``image``; an image of the same id keeps its tags (a rebuild of identical content)."""
        old = self.images.get(image.id)
        if old is not None:
            image.tags, image.digests = old.tags, old.digests
        self.images[image.id] = image
        return image

    def program(self, image_ref: str, stdout: bytes = b'', stderr: bytes = b'', exit_code: int = 0,
                files=None, oom: bool = False, run_until_stopped: bool = False, *, output=None,
                start_error: str | None = None, break_stream=None, stop_exit_code: int = 143,
                create_image: bool = True) -> Program:
        """What containers of ``image_ref`` do (see :class:`fakes.state.Program`); the image is added
        when the engine has none by that reference (unless ``create_image=False``)."""
        program = Program(stdout, stderr, output, exit_code, files, oom, run_until_stopped, start_error,
                          break_stream, stop_exit_code)
        self.programs[image_ref if image_ref.startswith('sha256:') else normalize(image_ref)] = program
        if create_image and self.find_image(image_ref) is None:
            self.add_image(image_ref)
        return program

    def program_for(self, ref: str, image: FakeImage) -> Program:
        for key in (ref if ref.startswith('sha256:') else normalize(ref), image.id, *image.tags):
            if key in self.programs:
                return self.programs[key]
        return self.default_program

    def fail_build(self, tag: str | None = None, error: str | None = None, output=(), code: int = 1,
                   step: str | None = None) -> BuildFailure:
        """Builds (of ``tag``, or all) fail at ``step`` (default: the first RUN), printing ``output``
        lines, then an error event; until removed from ``engine.build_failures``."""
        failure = BuildFailure(normalize(tag) if tag else None, error, tuple(output), code, step)
        self.build_failures.append(failure)
        return failure

    def registry(self, host: str, **settings) -> FakeRegistry:
        """The registry at ``host`` (made open and empty on first use); ``settings`` program it:
        ``credentials=(user, password)``, ``unreachable``, ``insecure_http``, ``error``, ``error_status``."""
        registry = self.registries.setdefault(host, FakeRegistry(host))
        for key, value in settings.items():
            if not hasattr(registry, key):
                raise TypeError(f'a FakeRegistry has no {key!r}')
            setattr(registry, key, value)
        return registry

    def publish(self, reference: str, labels: dict | None = None, layers: int = 2) -> str:
        """An image in its registry only (for pull tests); returns its manifest digest."""
        host, path, tag = split_reference(reference)
        self.counter += 1
        seed = digest('published', self.counter, reference)
        image = FakeImage('sha256:' + seed, [], dict(labels or {}),
                          ['sha256:' + digest('layer', seed, n) for n in range(layers)], self.now())
        manifest = 'sha256:' + digest('manifest', image.id)
        registry = self.registry(host)
        registry.manifests[f'{path}:{tag}'] = (manifest, image)
        registry.blobs.update(image.layers)
        return manifest

    def swarm(self, nodes: int = 1, cpus: float = 2, memory_gb: float = 24) -> list[dict]:
        """Make this engine a swarm manager of ``nodes`` ready nodes of that size (see :mod:`fakes.swarm`)."""
        self.nodes = [node(index, cpus, memory_gb) for index in range(nodes)]
        return self.nodes

    def program_tasks(self, image_ref: str, programs: list[Program]) -> None:
        """What the tasks of services created from ``image_ref`` (verbatim) do: slot N runs
        ``programs[N % len(programs)]``."""
        self.task_programs[image_ref] = list(programs)

    def finish(self, ref: str | None = None) -> None:
        """Let time pass: the running container ``ref`` (or every one that does not run until stopped)
        ends as programmed."""
        targets = [self.container(ref)] if ref else [c for c in self.containers.values()
                                                      if not c.program.run_until_stopped]
        for container in targets:
            if container.status == 'running':
                container.end(self.now())

    # -- looking at it ----------------------------------------------------------------------------

    def container(self, ref: str) -> FakeContainer:
        found = self.find_container(ref)
        if found is None:
            raise KeyError(f'no container {ref!r} on the fake engine')
        return found

    def image(self, ref: str) -> FakeImage:
        found = self.find_image(ref)
        if found is None:
            raise KeyError(f'no image {ref!r} on the fake engine')
        return found

    def find(self, method: str | None = None, path: str = '*') -> list[Call]:
        """The calls with that method whose path matches the glob ``path`` ('/containers/*/start')."""
        return [c for c in self.calls if (method is None or c.method == method) and fnmatch.fnmatch(c.path, path)]

    def last(self, method: str | None = None, path: str = '*') -> Call:
        found = self.find(method, path)
        if not found:
            raise AssertionError(f'no {method or ""} {path} call; calls: '
                                 + ', '.join(f'{c.method} {c.path}' for c in self.calls))
        return found[-1]

    # -- daemon endpoints -------------------------------------------------------------------------

    def network_list(self, call):
        """The default network, ``bridge``, made anew each time the engine starts (see :meth:`restart`)."""
        from .state import rfc3339
        return Reply.json([{'Name': 'bridge', 'Id': 'b' * 64, 'Driver': 'bridge', 'Scope': 'local',
                            'Created': rfc3339(self.started)}])

    def secret_create(self, call):
        self.counter += 1
        secret_id = f'secret{self.counter:020d}'
        self.secrets[secret_id] = {'ID': secret_id, 'Spec': dict(call.body or {})}
        return Reply.json({'ID': secret_id}, 201)

    def secret_list(self, call):
        """The secrets whose labels match every ``label`` filter (``key=value`` or ``key``); never their data."""
        wanted = (call.json_param('filters', {}) or {}).get('label') or []
        if isinstance(wanted, dict):
            wanted = list(wanted)
        def matches(labels, item):
            key, has, value = item.partition('=')
            return key in labels and (not has or labels[key] == value)
        found = [s for s in self.secrets.values() if all(matches(s['Spec'].get('Labels') or {}, w) for w in wanted)]
        return Reply.json([{'ID': s['ID'], 'Spec': {k: v for k, v in s['Spec'].items() if k != 'Data'}}
                           for s in found])

    def secret_remove(self, call, secret_id):
        if self.secrets.pop(secret_id, None) is None:
            return Reply.error(404, f'secret {secret_id} not found')
        return Reply(204, b'')

    def restart(self, later: datetime.timedelta = datetime.timedelta(seconds=1)) -> None:
        """The engine stops (its running containers end by SIGTERM, exit 143) and starts again ``later``."""
        now = self.clock()
        for container in self.containers.values():
            if container.status == 'running':
                container.end(now, 143)
        self.started = now + later

    def ping(self, call):
        return Reply(200, b'OK' if call.method == 'GET' else b'', content_type='text/plain; charset=utf-8')

    def version(self, call):
        return Reply.json({'Platform': {'Name': 'Docker Engine - Community (fake)'}, 'Version': '20.10.24',
                           'ApiVersion': self.api_versions[1], 'MinAPIVersion': self.api_versions[0],
                           'GitCommit': 'fake',
                           'GoVersion': 'go1.19.9', 'Os': 'linux', 'Arch': 'amd64', 'KernelVersion': '6.1.0',
                           'Components': [{'Name': 'Engine', 'Version': '20.10.24',
                                           'Details': {'ApiVersion': self.api_versions[1]}}]})

    def info(self, call):
        states = [c.status for c in self.containers.values()]
        return Reply.json({'ID': 'FAKE:ENGINE', 'Name': 'fake-engine', 'Containers': len(states),
                           'ContainersRunning': states.count('running'), 'ContainersPaused': 0,
                           'ContainersStopped': len(states) - states.count('running'), 'Images': len(self.images),
                           'Driver': 'overlay2', 'NCPU': 2, 'MemTotal': 24 * 1024 ** 3, 'OSType': 'linux',
                           'OperatingSystem': 'Fake Engine', 'Architecture': 'x86_64', 'ServerVersion': '20.10.24',
                           'Labels': [], 'Swarm': {'LocalNodeState': 'inactive', 'NodeID': ''}})
