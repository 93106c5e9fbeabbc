"""Volume endpoints of the fake engine: create (idempotent, as the engine's), list (label filters), remove
(refused while a container that is not removed mounts the volume). State: ``engine.volumes`` (name -> the
engine's volume JSON)."""
from __future__ import annotations

from .containers import filter_values
from .state import rfc3339
from .wire import Reply


class VolumeRoutes:
    """Mixed into FakeEngine, which provides ``volumes``, ``containers`` and ``now()``."""

    def volume_create(self, call):
        body = call.body or {}
        name = body.get('Name')
        if name not in self.volumes:
            self.volumes[name] = {'Name': name, 'Driver': body.get('Driver') or 'local',
                                  'Labels': dict(body.get('Labels') or {}), 'Mountpoint': f'/fake/volumes/{name}',
                                  'CreatedAt': rfc3339(self.now()), 'Scope': 'local', 'Options': None}
        return Reply.json(self.volumes[name], 201)

    def volume_list(self, call):
        filters = call.json_param('filters', {}) or {}
        found = []
        for volume in self.volumes.values():
            wanted = filter_values(filters.get('label', []))
            if all(self._has_label(volume['Labels'], w) for w in wanted):
                found.append(volume)
        return Reply.json({'Volumes': found, 'Warnings': None})

    @staticmethod
    def _has_label(labels: dict, wanted: str) -> bool:
        name, has_value, expected = wanted.partition('=')
        return name in labels and (not has_value or labels[name] == expected)

    def volume_remove(self, call, name):
        if name not in self.volumes:
            return Reply.error(404, f'get {name}: no such volume')
        users = [c.id for c in self.containers.values()
                 if any(m.get('Type') == 'volume' and m.get('Source') == name
                        for m in c.host_config.get('Mounts') or [])]
        if users:
            return Reply.error(409, f'remove {name}: volume is in use - [{", ".join(users)}]')
        del self.volumes[name]
        return Reply.empty(204)
