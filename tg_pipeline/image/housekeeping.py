"""Remove a project's old job images from an engine, keeping the newest few of each job.

Every code edit builds a new job image; the tag moves on and the old image stays
as ``<none>``. ``prune_job_images`` removes them.

API
---
``prune_job_images(client, project, keep=2, console=CONSOLE, dry_run=False) -> list[str]``
    On the engine of ``client`` (docker SDK), take the images labelled
    ``tg_pipeline.project=<project>`` that nothing builds on (``docker images``
    without ``-a``: the classic builder's intermediate images have children and
    are not listed), group them by ``tg_pipeline.job`` and keep the ``keep``
    newest of each job (by ``Created``) and every image a container uses, running
    or exited. The others are removed, each of its tags in turn, then the image:
    one line each on ``out`` (default stdout) and a summary line. Returns the ids
    of the images removed (``dry_run``: those it would remove; nothing changes).
    Images of other projects are never looked at.

Dependency images (labelled ``tg_pipeline.deps``): a job image is its dependency image plus the code layer
(see :mod:`tg_pipeline.image.compose`) and names it in its config; a dependency image stays while a kept job
image stands on it, a container uses it, or it is the newest of its job (the one the next build composes on;
with ``keep=0`` that one goes too), and goes after that.

Parents (images built by the classic builder): the engine deletes an image's untagged parents along with it (the
default, ``noprune=False``) only while nothing else needs them. Docker 20.10 with
the classic builder, checked by building versions that share a dependency step:
removing an old version deleted only its own image, because the dependency and
label images above it still had the newer versions as children; only removing
the last version built on them deleted them too, stopping at the tagged base
image. So the dependency layer of every kept image stays (the next build of the
job is still a cache hit), and a dependency layer that no kept image uses any
more goes with its last image instead of lingering, as ``noprune=True`` would
leave it.
"""
from __future__ import annotations

import re

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.image.compose import DEPS_LABEL

PROJECT_LABEL = 'tg_pipeline.project'
JOB_LABEL = 'tg_pipeline.job'


def created_key(created: str) -> tuple:
    """A sort key for docker's ``Created`` (RFC 3339, trailing zeros of the nanoseconds dropped)."""
    match = re.match(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?', created or '')
    if not match:
        return ('', 0)
    return match.group(1), int((match.group(2) or '0').ljust(9, '0')[:9])


def _describe(image) -> str:
    tags = ', '.join(image.tags) or '<none>'
    created = (image.attrs.get('Created') or '')[:19].replace('T', ' ')
    return f'{image.short_id[7:]} {tags} (job {image.labels.get(JOB_LABEL, "?")}, built {created})'


def _used_image_ids(client) -> set[str]:
    """Ids of the images of all containers on the engine, running or not."""
    return {c.get('ImageID') for c in client.api.containers(all=True)}


def _plan(images: list, keep: int, used: set[str]) -> tuple[list, list, int]:
    """(to remove, to keep, how many kept only because a container uses them). A dependency image goes when
    no kept job image stands on it (a job image names its dependency image in its config's ``Image``), no
    container uses it, and it is not its job's newest (while ``keep`` > 0): a registry-free ``run_remote``
    composes the job image on that one without loading the job image here."""
    jobs: dict[str, list] = {}
    deps = [i for i in images if DEPS_LABEL in i.labels and JOB_LABEL not in i.labels]
    for image in images:
        if image not in deps:
            jobs.setdefault(image.labels.get(JOB_LABEL, ''), []).append(image)
    remove, kept, in_use = _plan_jobs(jobs, keep, used)
    standing = {(i.attrs.get('Config') or {}).get('Image') for i in kept}
    newest = {}  # job -> its newest dependency image (none with keep=0: then all go)
    for image in sorted(deps, key=lambda i: (created_key(i.attrs.get('Created')), i.id)) if keep else []:
        newest[image.labels[DEPS_LABEL]] = image.id
    for image in deps:
        (kept if image.id in standing or image.id in used or image.id in newest.values() else remove).append(image)
    return remove, kept, in_use


def _plan_jobs(jobs: dict, keep: int, used: set[str]) -> tuple[list, list, int]:
    remove, kept, in_use = [], [], 0
    for job in sorted(jobs):
        newest_first = sorted(jobs[job], key=lambda i: (created_key(i.attrs.get('Created')), i.id), reverse=True)
        kept.extend(newest_first[:keep])
        for image in newest_first[keep:]:
            if image.id in used:
                kept.append(image)
                in_use += 1
            else:
                remove.append(image)
    return remove, kept, in_use


def _remove(client, image) -> tuple[bool, str]:
    """Untag, then delete (pruning parents nothing else needs); (deleted?, why not)."""
    import docker.errors
    deleted = []
    try:
        for reference in image.tags or [image.id]:
            deleted += [d.get('Deleted') for d in client.api.remove_image(reference, noprune=False)]
        if image.tags and image.id not in deleted:  # still there (e.g. a child appeared): try by id
            deleted += [d.get('Deleted') for d in client.api.remove_image(image.id, noprune=False)]
    except docker.errors.NotFound:
        return True, ''  # gone meanwhile
    except docker.errors.APIError as e:
        return False, e.explanation or str(e)
    return image.id in deleted, 'the engine kept it'


def prune_job_images(client, project: str, keep: int = 2, console: Console = CONSOLE,
                     dry_run: bool = False) -> list[str]:
    """Remove ``project``'s job images except the ``keep`` newest per job and those in use (module doc)."""
    if keep < 0:
        raise ValueError(f'keep must be 0 or more, got {keep}')
    images = client.images.list(filters={'label': f'{PROJECT_LABEL}={project}'})
    remove, kept, in_use = _plan(images, keep, _used_image_ids(client))
    removed, failed = [], 0
    for image in remove:
        if dry_run:
            console.print(f'would remove {_describe(image)}')
            removed.append(image.id)
            continue
        ok, why = _remove(client, image)
        if ok:
            console.print(f'removed {_describe(image)}')
            removed.append(image.id)
        else:
            console.print(f'kept {_describe(image)}: {why}')
            failed += 1
    verb = 'would remove' if dry_run else 'removed'
    console.print(f'project {project}: {verb} {len(removed)} job image(s), kept {len(kept) + failed} '
                  f'(the {keep} newest per job; {in_use} more used by containers'
                  + (f'; {failed} the engine would not remove' if failed else '') + ')')
    return removed
