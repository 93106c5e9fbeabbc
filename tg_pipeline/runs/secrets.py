"""``secret_env``: values from this environment that reach the job's environment and nothing else.

Why not ``env``: an ``env`` value is part of the container's config, which ``docker inspect`` shows to anyone who
may use the engine (its group), for as long as the container exists, and which our run records never hold but the
engine keeps. A ``secret_env`` value is never in the container's config, the image, a command line, a run record or
a log: the container's config names the variables (``TG_PIPELINE_SECRETS=NAME,...``), and the values travel apart:

* container runs (local and remote): over the container's standard input. The container is made with stdin open
  for one attach; before it starts, the run attaches to stdin (a request on the same Docker API connection, so
  over SSH for a remote engine), starts it, writes the values as one JSON object and closes stdin. The entry point
  reads them before anything else and puts them into the job's environment (``os.environ``), in memory only:
  no file, no tmpfs to copy out, and ``/proc/1/environ`` holds the environment the container started with, without
  them. A detached run gets them the same way before it detaches.
* swarm runs: Docker's own secrets, made per run (``tg-RUN_ID-NAME``, labelled with the run), given to its tasks as
  files on the tmpfs at ``/run/secrets/`` (readable only inside the task's container), exported into the job's
  environment by the entry point, and removed with the run's service. The swarm keeps them encrypted in its raft
  log meanwhile; ``docker secret inspect`` shows their names, never their values.

Who still sees a value: the job and what it starts; anyone who may use the engine can ``docker exec`` into the
running container and read the process's memory (the engine's group is root on that host). Nothing here protects
a value from the job itself printing it.
"""
from __future__ import annotations

import json

from tg_pipeline.errors import ConfigError
from tg_pipeline.runtime import protocol

SECRET_NAME_MAX = 64  # Docker's limit for a secret's name


def values(names, environ) -> dict[str, str]:
    """name -> value of ``names`` from ``environ``; a missing one is a ConfigError (a secret is never left out)."""
    missing = [name for name in names if name not in environ]
    if missing:
        exports = ' '.join(f'{name}=...' for name in missing)
        raise ConfigError(f'secret_env names {", ".join(missing)}, not set here', key='run.secret_env',
                          hint=f'set {"it" if len(missing) == 1 else "them"} first: export {exports}')
    return {name: environ[name] for name in names}


def environment(names) -> dict[str, str]:
    """What the container's config holds of them: their names only."""
    return {protocol.ENV_SECRETS: ','.join(names)} if names else {}


def payload(found: dict[str, str]) -> bytes:
    """The bytes written to the container's stdin: one JSON object, then the end of the stream."""
    return json.dumps(found).encode()


def start_with_secrets(client, container_id: str, found: dict[str, str]) -> None:
    """Start the container, giving it ``found`` on its standard input (attached before the start, closed after)."""
    from tg_pipeline.compat.docker import start_with_stdin
    start_with_stdin(client, container_id, payload(found))


# --- swarm -------------------------------------------------------------------------------------------------
def swarm_secrets(client, run_id: str, found: dict[str, str], labels: dict) -> list:
    """Docker secrets for this run's ``found`` values (labelled with its run id), as the service's references:
    files ``/run/secrets/NAME``, readable by the job only."""
    import docker
    references = []
    for name, value in found.items():
        secret_name = f'tg-{run_id}-{name}'[:SECRET_NAME_MAX]
        made = client.api.create_secret(secret_name, value.encode(), labels={
            **labels, f'{protocol.LABEL}.run_id': run_id, f'{protocol.LABEL}.secret': name})
        references.append(docker.types.SecretReference(made['ID'], secret_name, filename=name, mode=0o400))
    return references


def remove_swarm_secrets(client, run_id: str) -> None:
    """The run's Docker secrets, once its service is gone."""
    import docker
    try:
        found = client.api.secrets(filters={'label': f'{protocol.LABEL}.run_id={run_id}'})
    except docker.errors.APIError:
        return
    for secret in found:
        try:
            client.api.remove_secret(secret['ID'])
        except docker.errors.APIError:  # gone already, or still held by a task being removed: it goes with the next
            pass
