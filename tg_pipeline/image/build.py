"""Step 4: build the job's image with the Docker SDK (classic builder); its log is kept, shown as one progress
line (a verbose console: whole, as it comes; a failed build: whole, always; see
:mod:`tg_pipeline.image.build_output`)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.hosts.engine import image_exists, local_engine
from tg_pipeline.errors import BuildError
from tg_pipeline.paths import read_record, write_if_changed


# lines of pip's output that say why it could not install the requirements
PIP_FAILURES = ('No matching distribution found', 'ResolutionImpossible', 'Could not find a version',
                'conflicting dependencies')


def image_tag(package: str, version: str, prefix: str = '') -> str:
    return f'{prefix}{package}:{version}'


def context_archive(context_dir: Path, names: list[str], extra: dict | None = None) -> bytes:
    """A build context of just these files of ``context_dir`` (the sdist beside them never travels), and the
    ``extra`` files given by content (name -> bytes)."""
    files = {name: (Path(context_dir) / name).read_bytes() for name in names}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w') as tar:
        for name, data in {**files, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def build_image(context_dir: Path, tag: str, target: Path | None = None, console: Console = CONSOLE, client=None,
                only: list[str] | None = None, extra: dict | None = None) -> str:
    """Build ``context_dir`` (``only`` those files of it and the ``extra`` ones, when given) as ``tag``; return
    the image id and record it in ``target`` (JSON)."""
    from tg_pipeline.image.build_output import BuildOutput
    client = client or local_engine()
    with BuildOutput(tag, console) as shown:
        image_id = _build(client, context_dir, tag, shown, only, extra)
    if target is not None:
        write_if_changed(Path(target), json.dumps({'image_id': image_id, 'tag': tag}, indent=1).encode())
    return image_id


def _build(client, context_dir: Path, tag: str, shown, only: list[str] | None = None, extra=None) -> str:
    log, image_id = shown.log, None
    if only is None:
        stream = client.api.build(path=str(context_dir), tag=tag, rm=True, forcerm=True, decode=True)
    else:
        stream = client.api.build(fileobj=io.BytesIO(context_archive(context_dir, only, extra)),
                                  custom_context=True, tag=tag, rm=True, forcerm=True, decode=True)
    for event in stream:
        if 'error' in event:
            detail = event.get('errorDetail', {})
            log.append(event['error'])
            hint = None
            if 'no space left on device' in event['error']:
                hint = 'free disk space on the Docker host (docker system prune) and retry'
            elif any(m in line for line in log for m in PIP_FAILURES):
                problem = next(line for line in log for m in PIP_FAILURES if m in line).strip()
                raise BuildError(f'pip cannot install the dependencies of {tag}: {problem}',
                                 command=f'docker build -t {tag} {context_dir}', exit_code=detail.get('code'),
                                 output='\n'.join(log),
                                 hint='fix the name or version in dependencies of pipeline.toml '
                                      '(`pip index versions NAME` lists what exists)')
            elif 'pull access denied' in event['error'] or 'manifest unknown' in event['error']:
                hint = 'the base image cannot be pulled: set [docker] base_image or TG_PIPELINE_BASE_IMAGE ' \
                       'to an image this engine has (docker images)'
            raise BuildError(f'building image {tag} failed', command=f'docker build -t {tag} {context_dir}',
                             exit_code=detail.get('code'), output='\n'.join(log), hint=hint)
        text = event.get('stream') or (event.get('status') and event['status'] + '\n')
        if text:
            shown.add(text)
        aux = event.get('aux')
        if isinstance(aux, dict) and aux.get('ID'):
            image_id = aux['ID']
    if image_id is None:  # old engines only print "Successfully built <short id>"
        image_id = client.images.get(tag).id
    return image_id


# image.json, as the build records it
IMAGE_RECORD = {'image_id': str, 'tag': str, 'deps_id?': str, 'code_layer?': str}


def recorded_image(target: Path) -> dict | None:
    """What build_image recorded (image id and tag); None before a build, or when the record is of another
    shape (then build_image is not up to date and runs again)."""
    return read_record(target, IMAGE_RECORD)


def image_up_to_date(target: Path, client=None) -> bool:
    """doit uptodate check: the image the last build produced still exists (by id: tags are for people)."""
    record = recorded_image(target)
    if not record:
        return False
    return image_exists(client or local_engine(), record['image_id'])
