"""Every run keeps what ran (:mod:`tg_pipeline.provenance`): the run steps wrap their backend in a
:class:`Recording`, which writes the run's record once the run has its id (before it starts) and its end once the
run is collected; an attached run is recorded around the call (:func:`attached`)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from tg_pipeline.provenance import record as records
from tg_pipeline.provenance.store import Store
from tg_pipeline.workflow.context import Context

SUMMARY_CHARS = 60


def store_of(ctx: Context) -> Store:
    return Store(ctx.config.build_dir)


@functools.lru_cache(maxsize=None)
def tg_pipeline_version() -> str:
    from importlib import metadata
    try:
        return metadata.version('tg-pipeline')
    except metadata.PackageNotFoundError:
        return 'unknown'


def command_line() -> str:
    """The command that started the run: ``doit ...``, or the Python API and the script (or kernel) it ran in."""
    import shlex
    from tg_pipeline.compat.doit import doit_command_line
    if doit_command_line():
        return 'doit ' + shlex.join(sys.argv[1:])
    return f'Python API ({Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"})'


def kept_configuration(ctx: Context, job: str) -> bytes:
    """``doit config`` of the job, as kept: names of env variables only, never their values."""
    from tg_pipeline.config.describe import describe
    text = describe(ctx.config, [job], environ={})
    return ('\n'.join(line for line in text.splitlines() if not re.match(r'#\s+env\.', line)) + '\n').encode()


def payload_bytes(ctx: Context, job: str) -> dict[str, bytes]:
    if job in ctx.payloads:
        return dict(ctx.payloads[job])
    p = ctx.paths(job)
    return {name: p.resource(name).read_bytes() for name in ctx.resource_names(job)}


def read_here(ctx: Context, job: str) -> tuple[Any, bytes]:
    """(the project's git state or None, the kept configuration): what a record reads in this project."""
    from tg_pipeline.provenance.gitstate import git_state
    return git_state(ctx.config.root, ctx.config.source_roots), kept_configuration(ctx, job)


def code_and_state(ctx: Context, job: str, sdist: Path | None, read: tuple[Any, bytes] | None = None
                   ) -> tuple[dict, dict | None, dict[str, str]]:
    """(the record's code, its git state or None outside git, the store keys of its objects), the objects kept;
    ``read``: what :func:`read_here` gave, when it was read ahead."""
    from tg_pipeline.provenance.store import sha256_of
    store, payload = store_of(ctx), payload_bytes(ctx, job)
    state, configuration = read if read is not None else read_here(ctx, job)
    texts = {'config': configuration, 'patch': state.patch if state else b'',
             'cells': ctx.cells.get(job, '').encode()}
    if sdist is None:  # an attached run: its sdist made here, the same bytes the sdist step makes
        texts['sdist'] = attached_sdist(ctx, job, payload)
    keys = records.put_objects(store, sdist, texts)
    code: dict[str, Any] = {'sdist': keys['sdist'], 'payload': {n: sha256_of(d) for n, d in sorted(payload.items())},
            'cells': keys.get('cells')}
    git = None if state is None else {'root': state.root, 'commit': state.commit, 'branch': state.branch,
                                      'dirty': state.dirty, 'changed': state.changed, 'patch': keys.get('patch')}
    return code, git, keys


def attached_sdist(ctx: Context, job: str, payload: dict[str, bytes]) -> bytes:
    from tg_pipeline.package.sdist import root_paths, sdist_archive
    j, config = ctx.config.job(job), ctx.config
    return sdist_archive(j.package, j.version, j.module, config.source_roots, payload, list(j.dependencies),
                         cache=ctx.paths(job).pyproject, root_paths=root_paths(config.source_roots, config.root))[1]


def what_is_here(ctx: Context, job: str, sdist: Path | None, read: tuple[Any, bytes] | None = None) -> dict:
    """The parts of a run's record that say what it runs: identity, code, git state, configuration (kept)."""
    j = ctx.config.job(job)
    code, git, keys = code_and_state(ctx, job, sdist, read)
    return {'identity': {'package': j.package, 'version': j.version, 'module': j.module,
                         'project': ctx.config.project, 'owner': ctx.config.owner},
            'code': code, 'git': git, 'config': keys['config']}


def begin(ctx: Context, job: str, where: str, run_id: str, host: dict, *, sdist: Path | None, spec=None,
          deps_key: str = '', deps_id: str = '', original: dict | None = None,
          read: tuple[Any, bytes] | None = None) -> tuple[Path, dict]:
    """Keep the objects of the run ``run_id`` and write its record; (its path, the record). A re-run
    (``original``: the record of the run it repeats) runs what that run ran: its record says so. ``read``: what
    :func:`read_here` gave, when it was read ahead."""
    from tg_pipeline.paths import JobPaths
    store = store_of(ctx)
    run = spec.run if spec is not None else ctx.config.job(job).run
    with store.lock():
        if original is None:
            what = what_is_here(ctx, job, sdist, read)
        else:
            what = {key: original.get(key) for key in ('identity', 'code', 'git', 'config')}
            what['identity'] = {**what['identity'], 'owner': ctx.config.owner}
        record = {
            'format': records.FORMAT, 'run_id': run_id, 'job': job, 'where': where,
            'started': records.now(precise=True), **what,
            'dependencies': {'key': deps_key, 'image_id': deps_id}, 'host': {**host, 'gpus_given': run.gpus},
            'image': {'id': spec.image_id, 'reference': spec.reference} if spec is not None else None,
            'run_settings': plain({f.name: getattr(run, f.name) for f in dataclasses.fields(run)}),
            'variants': list(spec.variants) if spec is not None else [],
            'python': sys.version.split()[0], 'tg_pipeline': tg_pipeline_version(), 'command': command_line(),
        }
        if original is not None:
            record['repeats'] = original['run_id']
        path = records.path_of(JobPaths(ctx.config.build_dir, job).runs(where).dir, run_id)
        records.write(path, record)
    ctx.records[job] = record
    return path, record


def plain(value):
    """A settings value as JSON holds it (frozen tables and tuples as objects and lists)."""
    from collections.abc import Mapping
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def result_summary(result) -> str:
    """One line about how a run ended: its value's repr (cut), the error's last line, or the variants."""
    if getattr(result, 'variants', None):
        ok = sum(1 for v in result.variants if v.get('ok'))
        return f'{ok}/{len(result.variants)} variants succeeded'
    if not result.ok:
        lines = (result.traceback or '').strip().splitlines()
        return cut('failed' + (f': {lines[-1]}' if lines else ''))
    from tg_pipeline.runs.results import shown_value
    return cut(shown_value(result.run_dir, result.module))


def cut(text: str, chars: int = SUMMARY_CHARS) -> str:
    text = ' '.join(str(text).split())
    return text if len(text) <= chars else text[:chars - 3] + '...'


def finish(path: Path, record: dict, ended: dict) -> dict:
    record['ended'] = {'at': records.now(precise=True), **ended}
    records.write(path, record)
    return record


class Recording:
    """A run backend (:class:`~tg_pipeline.runs.backend.Backend`) that keeps what ran: the record when the run is
    prepared (it has its id, it has not started), its end when it is collected."""

    def __init__(self, backend, start):
        self._backend, self._start = backend, start  # start(run_id) -> (path, record)
        self.path: Path | None = None  # the run's record, once prepared
        self.record: dict | None = None

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def prepare(self, spec, environ=None, paths=None):
        handle = self._backend.prepare(spec, environ, paths)
        try:
            self.path, self.record = self._start(handle.run_id)
        except BaseException:
            self._backend.discard(handle)
            raise
        return handle

    def collect(self, handle, paths, logs_saved: bool = True):
        result = self._backend.collect(handle, paths, logs_saved)
        if self.path is not None and self.record is not None and handle.run_id == self.record['run_id']:
            ended = {'exit_code': result.exit_code, 'ok': result.ok, 'oom_killed': result.oom_killed,
                     'timed_out': result.timed_out, 'signal': result.signal, 'result': result_summary(result)}
            result.provenance = finish(self.path, self.record, ended)
        return result


def deps_image(host, image_id: str, p) -> tuple[str, Callable[[], Any] | None]:
    """(the id of the dependency image under the job image ``image_id``, the engine that has it); ``p``: the
    job's :class:`~tg_pipeline.paths.JobPaths` the image was built with."""
    from tg_pipeline.image.build import recorded_image
    from tg_pipeline.image.job_image import deps_records
    built = recorded_image(p.image) or {}  # (records of another shape: as if missing)
    if built.get('image_id') == image_id and built.get('deps_id'):
        from tg_pipeline.hosts.engine import local_engine
        return built['deps_id'], local_engine
    if host is not None and host.where != 'swarm':
        try:
            return host.docker.api.inspect_image(image_id)['Config']['Image'], lambda: host.docker
        except Exception:  # noqa: BLE001 - not there (yet): the record then says it is not known
            pass
    remote = [e for engine, e in deps_records(p.deps).items() if engine != 'local']
    if len(remote) == 1:  # a swarm run of an image the one remote engine used built (build_on = "remote")
        return remote[0].get('image_id', ''), None
    return '', None


def deps_key_of(ctx: Context, host, image_id: str, p) -> tuple[str, str]:
    """(the store's key of the run's dependency set, the dependency image's id); the set is read now when it was
    not kept when the image was built."""
    from tg_pipeline.provenance import dependencies
    deps_id, engine = deps_image(host, image_id, p)
    if not deps_id:
        return '', ''
    key = dependencies.image_key(deps_id)
    if store_of(ctx).has('deps', key) or engine is None:
        return (key if store_of(ctx).has('deps', key) else ''), deps_id
    return dependencies.ensure_recorded(engine(), deps_id, p.context, store_of(ctx),
                                        ctx.config.project, console=ctx.delivery_console()), deps_id


class Ahead:
    """A call made now in a thread of its own, its result (or what it raised) taken later with :meth:`result`.
    The thread is a daemon: a run that fails before it needs the result does not wait for it to end."""

    def __init__(self, call: Callable[[], Any]):
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._call, args=(call,), name='tg_pipeline-ahead', daemon=True)
        self._thread.start()

    def _call(self, call: Callable[[], Any]) -> None:
        try:
            self._value = call()
        except BaseException as e:  # noqa: BLE001 - raised again where the result is taken
            self._error = e

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


@dataclasses.dataclass
class Gathered:
    """What a run's record reads that no run id is needed for, read while the run is made ready (the delivery to
    the host, the container's creation): the host's facts (``docker info``, its GPUs: over SSH a round trip or
    more), and the project's git state and kept configuration (git programs)."""
    facts: Ahead
    here: Ahead | None  # None: a re-run, whose record says what the run it repeats ran


def gather(ctx: Context, job: str, host, here: bool = True) -> Gathered:
    """Start reading what the record of a run of ``job`` on ``host`` needs (see :class:`Gathered`)."""
    from tg_pipeline.provenance import hostfacts
    return Gathered(facts=Ahead(lambda: hostfacts.of_host(host)),
                    here=Ahead(lambda: read_here(ctx, job)) if here else None)


def recorded(ctx: Context, job: str, host, spec, backend, original: dict | None = None, paths=None,
             gathered: Gathered | None = None):
    """``backend`` wrapped to keep the record of the run of ``spec`` on ``host`` (``original``: the record of the
    run a re-run repeats; ``paths``: the JobPaths its image was made with, default the job's; ``gathered``: what
    :func:`gather` started reading, default read when the run has its id)."""
    paths = paths or ctx.paths(job)
    gathered = gathered or gather(ctx, job, host, here=original is None)

    def start(run_id: str):
        deps_key, deps_id = deps_key_of(ctx, host, spec.image_id, paths)
        return begin(ctx, job, host.where, run_id, gathered.facts.result(), sdist=paths.sdist, spec=spec,
                     deps_key=deps_key, deps_id=deps_id, original=original,
                     read=gathered.here.result() if gathered.here is not None and original is None else None)
    return Recording(backend, start)


@contextlib.contextmanager
def attached(ctx: Context, job: str, run_id: str):
    """Around the attached run ``run_id``: its record before, its end after; yields ``done(value)``."""
    from tg_pipeline.provenance import dependencies, hostfacts
    path, record = begin(ctx, job, 'attached', run_id, hostfacts.here(), sdist=None,
                         deps_key=dependencies.here(store_of(ctx)))
    ended: dict[str, Any] = {}

    def done(value):
        from tg_pipeline.runs.results import shown_object
        ended.update(exit_code=0, ok=True, result=cut(shown_object(value)))
    try:
        yield done
    except BaseException as e:
        code = getattr(e, 'exit_code', None)
        ended.update(exit_code=1 if code is None else code, ok=False,
                     result=cut('failed: ' + getattr(e, 'message', f'{type(e).__name__}: {e}').splitlines()[0]))
        raise
    finally:
        finish(path, record, ended)
