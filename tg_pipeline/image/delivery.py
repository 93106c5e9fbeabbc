"""How the job image gets to where a run happens, decided in ONE place.

A :class:`Delivery` is made from the configuration and one job (:meth:`Delivery.of`). It says:

* where the dependency image is built: here (``build_on = "local"``), or by the remote engine from
  requirements.txt (``"remote"``: only the inputs, the image config and the code layer cross the link);
* how an image built here reaches a remote engine: pushed to the registry and pulled there by digest
  (``transfer = "registry"``, the default when ``[registry]`` has an address), or only its missing layers sent
  over the run's SSH connection (``"ssh"``);
* whether ``build_image`` loads the job image into the local engine at all (:meth:`loads_here`): not for a
  command that only runs it on the remote over SSH, which sends it from its files;
* which build steps a run step waits for (:meth:`needs`);

and it does it: :meth:`to_remote` puts the image on a remote engine, :meth:`for_swarm` makes the registry hold it
for a swarm's nodes. Both return ``(image id, the image's name there for people)``; runs use the id.
"""
from __future__ import annotations

from dataclasses import dataclass

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import ConfigError

RUN_STEPS = ('run_local', 'run_remote', 'run_swarm')


@dataclass(frozen=True)
class Delivery:
    job: str
    tag: str  # name:version of the job image, for people
    build_on: str  # 'local' | 'remote'
    transfer: str  # 'registry' | 'ssh'
    registry: str  # the registry's address ('' without one)
    pull_from: str = ''  # the registry's address as the remote and the swarm's nodes reach it ('': the same)
    base: str = ''  # the base image, which a build on the remote starts from

    @classmethod
    def of(cls, config, job: str) -> 'Delivery':
        j = config.job(job)
        transfer = config.remote.transfer or ('registry' if config.registry.address else 'ssh')
        return cls(job, j.image or f'{config.docker.image_prefix}{j.package}:{j.version}', j.build_on, transfer,
                   config.registry.address, config.registry.pull_address, config.base_image)

    # --- the decisions -------------------------------------------------------------------------------
    def needs(self, step: str) -> list[str]:
        """The build steps that ``step`` (a run step) waits for."""
        job = self.job
        if step == 'run_local':
            return [f'build_image:{job}']
        if self.build_on == 'remote':  # the remote engine builds: only the inputs are needed here
            return [f'sdist:{job}', f'dockerfile:{job}']
        if step == 'run_remote' and self.transfer == 'ssh':
            return [f'build_image:{job}']
        return [f'push:{job}']

    def loads_here(self, requested: list[str]) -> bool:
        """Whether build_image loads the job image into the local engine, for a doit command that runs the steps
        ``requested`` ([] when it names none: everything may follow). Not when it runs only run_remote over SSH:
        the image then goes from its files to the remote engine, and loading it here too would only cost time
        (build_image loads it for run_local and push)."""
        return not requested or set(requested) != {'run_remote'} or self.transfer != 'ssh'

    def registry_reference(self) -> str:
        """``registry/name:tag``, where push puts the image and the remote pulls it."""
        from tg_pipeline.image.registry import remote_reference
        return remote_reference(self.registry, self.tag)

    def pull_reference(self) -> str:
        """``registry/name:tag`` as the remote engine and the swarm's nodes pull it (``[registry] pull_address``)."""
        from tg_pipeline.image.registry import remote_reference
        return remote_reference(self.pull_from or self.registry, self.tag)

    def check_swarm(self) -> None:
        if not self.registry:
            raise ConfigError('run_swarm needs a [registry] address: every node pulls the image from there',
                              key='registry.address', hint='set address in [registry] of pipeline.toml')

    # --- doing it ------------------------------------------------------------------------------------
    def to_remote(self, host, paths, settings: dict, auth=None, console: Console = CONSOLE) -> tuple[str, str]:
        """The job image on ``host``'s engine (a remote Host): built there, sent over SSH, or pulled by digest."""
        where = host.connection.host
        if self.build_on == 'remote':
            return self._build_there(host, paths, settings, console), self.tag
        from tg_pipeline.image.build import built_image_id
        image_id = built_image_id(paths.image)
        if self.transfer == 'ssh' or self._pull_would_resend(host, paths, image_id, console):
            from tg_pipeline.hosts.engine import local_engine
            from tg_pipeline.image.job_image import deps_tag, recorded_composed
            from tg_pipeline.image.transfer import send_job_image, transfer
            image = recorded_composed(paths)  # None unless image.json's image was composed here
            if image is None:  # built by the engine itself: the whole image, missing layers only
                transfer(local_engine(), host.docker, image_id, self.tag, console, host=where)
            else:
                send_job_image(local_engine(), host.docker, image, self.tag, deps_tag(self.tag), console, host=where)
                _note_sent(paths, where)
            return image_id, self.tag
        from tg_pipeline.image.registry import pull, recorded_push
        reference = self.pull_reference()
        pull(host.docker, reference, image_id, auth, console, host=where, digest=recorded_push(paths.push, image_id))
        return image_id, reference

    def _pull_would_resend(self, host, paths, image_id: str, console: Console) -> bool:
        """transfer = "registry", after runs over SSH: the remote has this job's dependency layers from an SSH
        transfer, which its engine does not know as the registry's, so a pull would download them all again. Then
        the code layer goes over SSH as well (said once, here); a pull again once the image is the registry's."""
        import docker
        where = host.connection.host
        deps, sent = _local_deps(paths), _sent_over_ssh(paths)
        if not deps or (sent.get(where) or {}).get('deps') != deps:
            return False
        try:
            host.docker.api.inspect_image(image_id)
            return False  # the remote has the job image: nothing to pull
        except docker.errors.ImageNotFound:
            pass
        if not sent[where].get('said'):
            console.print(f'{where} has the dependency layers from a transfer over SSH, which a pull from the '
                          f'registry would download again: the code layer goes over SSH too (said once)')
            _note_sent(paths, where, said=True)
        return True

    def _build_there(self, host, paths, settings: dict, console: Console) -> str:
        from tg_pipeline.image.job_image import build_job_image
        where = host.connection.host
        self._base_there(host, console)
        with console.progress('build', unit='', keep=True) as shown:  # inside a run step: a line of its own
            image = build_job_image(host.docker, paths, self.tag, settings, engine=host.name, console=console,
                                    host=where)
            shown.close(f'on {where}: {"dependency image and " if image.deps_built else ""}code layer '
                        f'(image {image.image_id[7:19]})')
        return image.image_id

    def _base_there(self, host, console: Console) -> None:
        """A build on the remote starts from the base image: one the remote lacks and this machine has is sent
        (its missing layers only, over the SSH connection); else the remote pulls it, or its build says why not."""
        import docker
        from tg_pipeline.errors import DockerUnavailable
        if not self.base:
            return
        try:
            host.docker.images.get(self.base)
            return
        except docker.errors.ImageNotFound:
            pass
        from tg_pipeline.hosts.engine import local_engine
        from tg_pipeline.image.transfer import transfer
        try:
            here = local_engine().images.get(self.base)
        except (docker.errors.ImageNotFound, DockerUnavailable):
            return
        name = self.base if ':' in self.base.rpartition('/')[2] else f'{self.base}:latest'
        console.print(f'{host.connection.host} lacks the base image {self.base}: sending it from here')
        transfer(local_engine(), host.docker, here.id, name, console, host=host.connection.host)

    def for_swarm(self, paths, open_remote, settings: dict, auth=None, console: Console = CONSOLE) -> tuple[str, str]:
        """(image id, ``repository@digest``) for a swarm run: every node runs exactly the pushed manifest,
        whatever the tag points at by then. With build_on = "remote", the [remote] host (``open_remote()``, a
        context manager giving its Host) builds the job image and pushes it to the registry itself, so nothing but
        the inputs crosses this machine's link."""
        self.check_swarm()
        from tg_pipeline.image.build import recorded_image
        from tg_pipeline.image.registry import push, recorded_push
        reference = self.pull_reference()  # the nodes pull it; the remote, building it, pushes it there too
        if self.build_on == 'remote':
            with open_remote() as host:
                image_id = self._build_there(host, paths, settings, console)
                digest = push(image_id, reference, auth=auth, console=console, client=host.docker)
            return image_id, by_digest(reference, digest)
        image_id = (recorded_image(paths.image) or {}).get('image_id') or self.tag
        pushed = recorded_push(paths.push, image_id)
        return image_id, by_digest(reference, pushed) if pushed else reference


def _local_deps(paths) -> str | None:
    """The id of the dependency image built here (deps.json's entry of this engine), if its record holds one."""
    from tg_pipeline.image.job_image import deps_records
    return (deps_records(paths.deps).get('local') or {}).get('image_id')


def _sent_over_ssh(paths) -> dict:
    """ssh_sent.json: remote -> {deps, said}; entries of another shape are left out (as if nothing was sent)."""
    from tg_pipeline.paths import has_shape, read_json
    found = read_json(paths.ssh_sent)
    return {where: entry for where, entry in found.items() if has_shape(entry, {'deps': str, 'said?': bool})} \
        if isinstance(found, dict) else {}


def _note_sent(paths, where: str, said: bool = False) -> None:
    """The dependency image whose layers went to ``where`` over SSH (see Delivery._pull_would_resend), and
    whether a registry run has said so already."""
    import json
    from tg_pipeline.paths import write_if_changed
    deps = _local_deps(paths)
    if deps:
        sent = _sent_over_ssh(paths)
        said = said or (sent.get(where) or {}).get('deps') == deps and (sent.get(where) or {}).get('said', False)
        sent[where] = {'deps': deps, 'said': said}
        write_if_changed(paths.ssh_sent, json.dumps(sent, indent=1, sort_keys=True).encode())


def by_digest(reference: str, digest: str) -> str:
    """``registry/name@sha256:...`` for ``registry/name:tag``: exactly that manifest, whatever the tag says now."""
    return f'{reference.rpartition(":")[0]}@{digest}'
