"""Container endpoints of the fake engine: create, start, wait, logs, inspect, list, stop, kill, remove, archive.

A started container has "printed" its whole programmed output at once and is about to exit: it
exits when a ``wait`` or a followed ``logs`` stream reaches its end (or at ``FakeEngine.finish``),
unless it runs until stopped. Its files appear under ``/tg_pipeline/run`` once it exited.
"""
from __future__ import annotations

import re
import signal

from .state import STDERR, STDOUT, FakeContainer, FakeEngineBlocked, digest, frame, normalize, path_stat, tar_of
from .wire import Reply

NAME = re.compile(r'[a-zA-Z0-9][a-zA-Z0-9_.-]+')
ARCHIVE_PIECE = 64 * 1024


class Abort(Exception):
    """Raised by a handler to answer with ``reply`` at once (an unknown id, a conflict)."""

    def __init__(self, reply: Reply):
        super().__init__(reply.status)
        self.reply = reply


def filter_values(value) -> list[str]:
    """A filter's values in either form the API takes: ["a", "b"] or {"a": true, "b": true}."""
    if isinstance(value, dict):
        return [k for k, on in value.items() if on]
    return list(value) if isinstance(value, (list, tuple)) else [value]


class ContainerRoutes:
    """Mixed into FakeEngine, which provides ``containers``, ``removed``, ``now()``, ``find_image()``,
    ``program_for()``."""

    def find_container(self, ref: str) -> FakeContainer | None:
        """By id, by name (with or without its '/'), or by a unique id prefix: as the engine looks them up."""
        if ref in self.containers:
            return self.containers[ref]
        for container in self.containers.values():
            if container.name == ref.lstrip('/'):
                return container
        matches = [c for c in self.containers.values() if ref and c.id.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def _container(self, ref: str) -> FakeContainer:
        container = self.find_container(ref)
        if container is None:
            raise Abort(Reply.error(404, f'No such container: {ref}'))
        return container

    def container_create(self, call):
        body = call.body or {}
        ref = body.get('Image') or ''
        image = self.find_image(ref)
        if image is None:
            return Reply.error(404, f'No such image: {normalize(ref) if ref else ref}')
        name = call.params.get('name')
        if name and not NAME.fullmatch(name.lstrip('/')):
            return Reply.error(400, f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        self.counter += 1
        container_id = digest('container', self.counter, name)
        name = (name or f'fake_{container_id[:8]}').lstrip('/')
        clash = next((c for c in self.containers.values() if c.name == name), None)
        if clash:
            return Reply.error(409, f'Conflict. The container name "/{name}" is already in use by container '
                                    f'"{clash.id}". You have to remove (or rename) that container to be able '
                                    'to reuse that name.')
        self.containers[container_id] = FakeContainer(container_id, name, ref, image, body,
                                                      self.program_for(ref, image), self.now())
        return Reply.json({'Id': container_id, 'Warnings': []}, 201)

    def container_inspect(self, call, ref):
        return Reply.json(self._container(ref).inspect())

    def container_start(self, call, ref):
        container = self._container(ref)
        if container.status == 'running':
            return Reply.empty(304)
        if container.program.start_error:
            return Reply.error(500, container.program.start_error)
        container.start(self.now())
        return Reply.empty(204)

    def container_wait(self, call, ref):
        container = self._container(ref)
        if container.status == 'running':
            if container.program.run_until_stopped:
                raise FakeEngineBlocked(f'wait on container {container.name}: it runs until stopped, and nothing '
                                        'can stop it while the fake answers this call')
            container.end(self.now())
        return Reply.json({'Error': None, 'StatusCode': container.exit_code})

    def container_logs(self, call, ref):
        container = self._container(ref)
        wanted = {STDOUT: call.flag('stdout'), STDERR: call.flag('stderr')}
        frames = [] if container.status == 'created' else container.program.frames()
        frames = [(kind, data) for kind, data in frames if wanted[kind]]
        pieces = self._log_pieces(container, frames, call.flag('follow'))
        return Reply.stream(pieces, 'application/vnd.docker.raw-stream')

    def _log_pieces(self, container, frames, follow: bool):
        """The frames; then, when following a running container, its end (made when read this far)."""
        broken = container.program.break_stream if follow and container.status == 'running' else None
        for index, (kind, data) in enumerate(frames):
            if broken and index == broken[0]:
                raise broken[1]
            yield frame(kind, data)
        if broken:
            raise broken[1]
        if follow and container.status == 'running':
            if container.program.run_until_stopped:
                raise FakeEngineBlocked(f'logs follow of container {container.name}: it runs until stopped, so '
                                        'a real engine would stream nothing more until someone stops it')
            container.end(self.now())

    def container_list(self, call):
        filters = call.json_param('filters', {}) or {}
        unknown = set(filters) - {'label', 'name', 'status', 'ancestor', 'id', 'exited'}
        if unknown:
            return Reply.error(400, f"invalid filter '{sorted(unknown)[0]}'")
        show_all = call.flag('all') or 'status' in filters
        found = [c for c in self.containers.values()
                 if (show_all or c.status == 'running') and self._matches(c, filters)]
        found.sort(key=lambda c: (c.created, self._order(c)), reverse=True)  # newest first
        limit = int(call.params.get('limit') or -1)
        return Reply.json([c.summary() for c in (found[:limit] if limit > 0 else found)])

    def _order(self, container) -> int:
        return list(self.containers).index(container.id)

    def _matches(self, container, filters: dict) -> bool:
        labels = container.labels
        for key, value in filters.items():
            values = filter_values(value)
            if key == 'label':  # every label filter must hold
                for wanted in values:
                    name, has_value, expected = wanted.partition('=')
                    if name not in labels or (has_value and labels[name] != expected):
                        return False
            elif key == 'name' and not any(re.search(v, '/' + container.name) for v in values):
                return False
            elif key == 'status' and container.status not in values:
                return False
            elif key == 'ancestor' and not any(self._descends(container, v) for v in values):
                return False
            elif key == 'id' and not any(container.id.startswith(v) for v in values):
                return False
            elif key == 'exited' and not (container.status == 'exited' and str(container.exit_code) in values):
                return False
        return True

    def _descends(self, container, ref: str) -> bool:
        image = self.find_image(ref)
        return (image is not None and image.id == container.image.id) or normalize(ref) == normalize(
            container.image_ref)

    def container_stop(self, call, ref):
        container = self._container(ref)
        if container.status != 'running':
            return Reply.empty(304)
        container.end(self.now(), container.program.stop_exit_code)
        return Reply.empty(204)

    def container_kill(self, call, ref):
        container = self._container(ref)
        if container.status != 'running':
            return Reply.error(409, f'Cannot kill container: {ref}: Container {container.id} is not running')
        name = call.params.get('signal') or 'SIGKILL'
        number = int(name) if str(name).isdigit() else int(getattr(signal, name if name.startswith('SIG')
                                                                         else 'SIG' + name))
        container.end(self.now(), 128 + number)
        return Reply.empty(204)

    def container_remove(self, call, ref):
        container = self._container(ref)
        if container.status == 'running':
            if not call.flag('force'):
                return Reply.error(409, f'You cannot remove a running container {container.id}. Stop the container '
                                        'before attempting removal or force remove')
            container.end(self.now(), 137)
        del self.containers[container.id]
        self.removed.append(container)
        return Reply.empty(204)

    def container_archive(self, call, ref):
        container = self._container(ref)
        path = call.params.get('path') or '/'
        data = tar_of(container.files, path, container.finished_at or self.now())
        if data is None:
            return Reply.error(404, f'Could not find the file {path} in container {ref}')
        is_dir = path.rstrip('/') not in container.files
        name = path.rstrip('/').rsplit('/', 1)[-1] or '/'
        size = 4096 if is_dir else len(container.files[path.rstrip('/')])
        stat = path_stat(name, size, is_dir, container.finished_at or self.now())
        pieces = (data[i:i + ARCHIVE_PIECE] for i in range(0, len(data), ARCHIVE_PIECE))
        return Reply.stream(pieces, 'application/x-tar', {'X-Docker-Container-Path-Stat': stat})
