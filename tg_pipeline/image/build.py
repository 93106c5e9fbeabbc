"""Step 4: build the job's image with the Docker SDK (classic builder); its log is kept, shown as one progress
line (a verbose console: whole, as it comes; a failed build: whole, always; see
:mod:`tg_pipeline.image.build_output`)."""
from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.hosts.engine import image_exists, local_engine
from tg_pipeline.errors import BuildError, PipelineError
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
                only: list[str] | None = None, extra: dict | None = None, host: str = 'local') -> str:
    """Build ``context_dir`` (``only`` those files of it and the ``extra`` ones, when given) as ``tag``; return
    the image id and record it in ``target`` (JSON). ``host``: the engine that builds (``local``, or a remote's
    ``user@host:port``), named in the build's log and error."""
    from tg_pipeline.image.build_output import BuildOutput
    client = client or local_engine()
    with BuildOutput(tag, console, host) as shown:
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
            error = _failed(shown, tag, context_dir, event)
            _remove_made(client, shown.log)
            raise error
        text = event.get('stream') or (event.get('status') and event['status'] + '\n')
        if text:
            shown.add(text)
        aux = event.get('aux')
        if isinstance(aux, dict) and aux.get('ID'):
            image_id = aux['ID']
    if image_id is None:  # old engines only print "Successfully built <short id>"
        image_id = client.images.get(tag).id
    return image_id


NO_NETWORK = ('Failed to establish a new connection', 'Temporary failure in name resolution', 'Network is unreachable',
              'Could not fetch URL', 'ProxyError', 'Name or service not known')
_MADE = re.compile(r'^ ---> ([0-9a-f]{12,64})$')


def _remove_made(client, log: list[str]) -> None:
    """After a failed build: the images its steps made (not those it found in the cache), newest first, while
    untagged and unused: nothing of a failed build stays on the engine."""
    made, skip = [], False
    for line in log:
        if line.startswith('Step ') and ' : FROM ' in line or line.strip() == '---> Using cache':
            skip = True  # the base image, or one the cache held: not made by this build
        elif (found := _MADE.match(line.rstrip())) is not None:
            if not skip:
                made.append(found.group(1))
            skip = False
    for image_id in reversed(made):
        try:
            if not client.api.inspect_image(image_id).get('RepoTags'):
                client.api.remove_image(image_id, noprune=False)
        except Exception:  # noqa: BLE001 - in use or gone: not ours to force
            continue


def _failed(shown, tag: str, context_dir: Path, event: dict) -> BuildError:
    """The build's error, said once: the log is printed whole when the build ends (see BuildOutput), so the error
    quotes it only when nothing prints it (a quiet console); it names the engine that built."""
    from tg_pipeline.image.build_output import plain
    detail, log = event.get('errorDetail', {}), shown.log
    log.append(plain(event['error']))
    local = shown.host == 'local'
    where = 'on this machine' if local else f'on {shown.host}'
    said = dict(command=f'docker build -t {tag} {context_dir}' if local else None, exit_code=detail.get('code'),
                output=None if shown.prints_log else '\n'.join(log))
    hint = None
    if any(m in line for line in log for m in NO_NETWORK):  # pip then says no version exists: not the name's fault
        problem = next(line.strip() for line in log for m in NO_NETWORK if m in line)
        error = BuildError(f'the build of {tag} {where} cannot reach the package index: {problem[:300]}', **said,
                           hint=f'give the Docker engine {"here" if local else "of " + shown.host} network access to '
                                f'the index (a proxy in its environment), or build the dependency image '
                                f'{"on the remote: build_on=remote" if local else "here and send it: build_on=local"}')
        error.build_log = '\n'.join(log)
        return error
    if 'no space left on device' in event['error']:
        hint = f'free disk space on the Docker host {"" if local else shown.host + " "}(docker system prune) and retry'
    elif any(m in line for line in log for m in PIP_FAILURES):
        problems = dict.fromkeys(line.strip().removeprefix('ERROR: ') for line in log for m in PIP_FAILURES
                                 if m in line)  # pip's lines without their own "ERROR: ": ours says it once
        error = BuildError(f'pip cannot install the dependencies of {tag} ({where}): {"; ".join(problems)}', **said,
                           hint='fix the name or version in dependencies of pipeline.toml '
                                '(`pip index versions NAME` lists what exists)')
        error.build_log = '\n'.join(log)
        return error
    elif ('pull access denied' in event['error'] or 'manifest unknown' in event['error']) and local:
        hint = 'the base image cannot be pulled: set [docker] base_image or TG_PIPELINE_BASE_IMAGE ' \
               'to an image this engine has (docker images)'
    elif 'pull access denied' in event['error'] or 'manifest unknown' in event['error']:
        hint = f'{shown.host} cannot pull the base image, and this machine has none to send it: pull it here ' \
               f'(docker pull) or there, or set [docker] base_image to an image one of them has'
    error = BuildError(f'building image {tag} failed ({where})', **said, hint=hint)
    error.build_log = '\n'.join(log)
    return error
# image.json, as the build records it
IMAGE_RECORD = {'image_id': str, 'tag': str, 'deps_id?': str, 'code_layer?': str,
                'code_layers?': lambda v: isinstance(v, list) and all(  # [[diff id, file name], ...]: base, delta
                    isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in v)}


def recorded_image(target: Path) -> dict | None:
    """What build_image recorded (image id and tag); None before a build, or when the record is of another
    shape (then build_image is not up to date and runs again)."""
    return read_record(target, IMAGE_RECORD)


def built_image_id(target: Path) -> str:
    """The image id build_image recorded in ``target`` (build/JOB/image.json), which a step after it needs;
    an ERROR when there is none (the record was removed or is of another shape)."""
    record = recorded_image(target)
    if record is None:
        raise PipelineError(f'no job image is recorded in {target}',
                            hint=f'build it again: doit build_image:{Path(target).parent.name}')
    return record['image_id']


def image_up_to_date(target: Path, client=None) -> bool:
    """doit uptodate check: the image the last build produced still exists (by id: tags are for people)."""
    record = recorded_image(target)
    if not record:
        return False
    return image_exists(client or local_engine(), record['image_id'])
