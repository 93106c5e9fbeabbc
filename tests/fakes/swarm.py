"""Swarm endpoints of the fake engine: nodes, services (create, list, inspect, remove, logs) and tasks.

The engine is a swarm manager only after ``FakeEngine.swarm(...)`` (before, ``/nodes`` answers 503 as
a plain engine does). A service runs at once: on create, each of its tasks (one per completion of a
replicated job, or per replica) has already run the :class:`fakes.state.Program` given for its slot by
``FakeEngine.program_tasks(image, [program, ...])`` and ended as programmed (``complete`` for exit code 0,
else ``failed``). Its log (``/services/{id}/logs``) is every task's frames, each line prefixed with the
task's details when asked (``details=1``), as the manager gathers them from the nodes. The fake knows
nothing of the entry point: a test that wants a run folder back puts the marker lines in a task's output.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from .containers import Abort, filter_values
from .state import Program, digest, frame, rfc3339
from .wire import Reply


@dataclass
class FakeService:
    id: str
    body: dict  # the create request's JSON, verbatim: its Spec
    created: datetime.datetime
    tasks: list = field(default_factory=list)  # the engine's task JSON
    programs: dict = field(default_factory=dict)  # task id -> Program

    @property
    def name(self) -> str:
        return self.body.get('Name') or self.id[:25]

    @property
    def labels(self) -> dict:
        return self.body.get('Labels') or {}

    def inspect(self) -> dict:
        return {'ID': self.id, 'Version': {'Index': 1}, 'CreatedAt': rfc3339(self.created),
                'UpdatedAt': rfc3339(self.created), 'Spec': self.body}


def node(index: int, cpus: float, memory_gb: float) -> dict:
    return {'ID': digest('node', index)[:25], 'Spec': {'Role': 'manager' if index == 0 else 'worker',
                                                       'Availability': 'active'},
            'Description': {'Hostname': f'fake-node-{index}',
                            'Resources': {'NanoCPUs': int(cpus * 1e9), 'MemoryBytes': int(memory_gb * 1024 ** 3)}},
            'Status': {'State': 'ready', 'Addr': f'127.0.0.{index + 1}'}}


class SwarmRoutes:
    """Mixed into FakeEngine, which provides ``nodes`` (None: no swarm), ``services``, ``task_programs``,
    ``counter`` and ``now()``."""

    def node_list(self, call):
        if self.nodes is None:
            return Reply.error(503, 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
                                    'join" to connect this node to swarm and try again.')
        return Reply.json(self.nodes)

    def _service(self, ref: str) -> FakeService:
        for service in self.services.values():
            if ref in (service.id, service.name) or (len(ref) >= 4 and service.id.startswith(ref)):
                return service
        raise Abort(Reply.error(404, f'service {ref} not found'))

    def service_create(self, call):
        if self.nodes is None:
            return Reply.error(503, 'This node is not a swarm manager.')
        body = call.body or {}
        self.counter += 1
        service = FakeService(digest('service', self.counter)[:25], body, self.now())
        self.services[service.id] = service
        self._run_tasks(service)
        return Reply.json({'ID': service.id, 'Warnings': None}, 201)

    def _run_tasks(self, service: FakeService) -> None:
        mode = service.body.get('Mode') or {}
        count = (mode.get('ReplicatedJob') or {}).get('TotalCompletions') or (
            mode.get('Replicated') or {}).get('Replicas') or 1
        image = service.body['TaskTemplate']['ContainerSpec']['Image']
        programs = self.task_programs.get(image) or [Program()]
        for slot in range(count):
            self.counter += 1
            program = programs[slot % len(programs)]
            task_id = digest('task', self.counter)[:25]
            code = program.exit_code
            status = {'Timestamp': rfc3339(self.now()), 'State': 'complete' if code == 0 else 'failed',
                      'Message': 'finished' if code == 0 else 'started',
                      'ContainerStatus': {'ContainerID': digest('task container', task_id), 'ExitCode': code}}
            if code:
                status['Err'] = f'task: non-zero exit ({code})'
            task = {'ID': task_id, 'ServiceID': service.id, 'NodeID': self.nodes[slot % len(self.nodes)]['ID'],
                    'CreatedAt': rfc3339(self.now()), 'Status': status, 'DesiredState': 'complete',
                    'Spec': service.body['TaskTemplate']}
            if slot:
                task['Slot'] = slot  # the API omits a zero slot
            service.tasks.append(task)
            service.programs[task_id] = program

    def service_list(self, call):
        filters = call.json_param('filters', {}) or {}
        found = [s.inspect() for s in self.services.values() if self._service_matches(s, filters)]
        return Reply.json(found)

    @staticmethod
    def _service_matches(service: FakeService, filters: dict) -> bool:
        for key, value in filters.items():
            values = filter_values(value)
            if key == 'label':
                for wanted in values:
                    name, has_value, expected = wanted.partition('=')
                    if name not in service.labels or (has_value and service.labels[name] != expected):
                        return False
            elif key == 'id' and not any(service.id.startswith(v) for v in values):
                return False
            elif key == 'name' and not any(service.name.startswith(v) for v in values):
                return False
        return True

    def service_inspect(self, call, ref):
        return Reply.json(self._service(ref).inspect())

    def service_remove(self, call, ref):
        service = self._service(ref)
        del self.services[service.id]
        self.removed_services.append(service)
        return Reply.empty(200)

    def task_list(self, call):
        filters = call.json_param('filters', {}) or {}
        wanted = filter_values(filters.get('service', []))
        tasks = [t for s in self.services.values() if not wanted or s.id in wanted or s.name in wanted
                 for t in s.tasks]
        return Reply.json(tasks)

    def service_logs(self, call, ref):
        service = self._service(ref)
        wanted = {1: call.flag('stdout'), 2: call.flag('stderr')}
        pieces = []
        for task in service.tasks:
            details = (f'com.docker.swarm.node.id={task["NodeID"]},com.docker.swarm.service.id={service.id},'
                       f'com.docker.swarm.task.id={task["ID"]} ').encode() if call.flag('details') else b''
            for kind, data in service.programs[task['ID']].frames():
                if wanted[kind]:
                    pieces.extend(frame(kind, details + line) for line in data.splitlines(keepends=True))
        return Reply.stream(pieces, 'application/vnd.docker.raw-stream')
