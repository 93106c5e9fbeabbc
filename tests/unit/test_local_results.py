"""A local run's folder is a bind mount of its folder here (runs/container.py): what arrived there is taken as it is,
an empty one falls back to the engine's archive, a failed create leaves no folder; the entry point hands the files
to the host's user (runtime/entry.hand_over)."""
import os
import pickle

import pytest

from fakes.runs import IMAGE, local_backend, make_spec
from tg_pipeline.console import Console
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle
from tg_pipeline.runtime import entry, protocol


@pytest.fixture
def bound(client, monkeypatch):
    backend = local_backend(client)
    monkeypatch.setattr(backend, 'binds', True)  # the fake engine is no Unix socket here: as if it were
    return backend


def test_an_empty_bound_folder_falls_back_to_the_archive(engine, bound, tmp_path):
    """The engine wrote the run folder elsewhere (the socket leads to another machine): the archive brings it."""
    engine.program(IMAGE, stdout=b'hello\n', files={'result.pkl': pickle.dumps(7), 'exit.json': b'{"exit_code": 0}'})
    paths = RunPaths(tmp_path / 'local')
    result = lifecycle.run(bound, make_spec(engine), paths, console=Console(quiet=True))
    assert result.value == 7 and paths.out(result.run_id).read_bytes() == b'hello\n'
    mounts = engine.removed[-1].host_config.get('Mounts') or []
    assert {m['Target'] for m in mounts} >= {protocol.RUN_DIR, protocol.LOG_DIR}
    assert not (paths.dir / f'{result.run_id}.logs').exists()  # the copies' folder is gone after collecting


def test_what_arrived_in_the_bound_folder_is_taken_as_it_is(engine, bound, tmp_path, monkeypatch):
    paths = RunPaths(tmp_path / 'local')
    made = {}

    def start(handle, spec=None, environ=None):  # the entry point writes into the bound folders, and ends
        run_dir, logs = paths.run_dir(handle.run_id), paths.dir / f'{handle.run_id}.logs'
        (run_dir / 'result.pkl').write_bytes(pickle.dumps('from the bind mount'))
        (run_dir / protocol.EXIT_FILE).write_text('{"exit_code": 0, "reason": "ok"}')
        (logs / 'stdout').write_bytes(b'exact bytes \xff\n')
        made['run_id'] = handle.run_id
        return started(handle, spec, environ)
    started = bound.start
    monkeypatch.setattr(bound, 'start', start)
    engine.program(IMAGE, stdout=b'exact bytes ?\n')  # the engine's log is not exact; the copy is
    result = lifecycle.run(bound, make_spec(engine), paths, console=Console(quiet=True))
    assert result.value == 'from the bind mount'
    assert paths.out(result.run_id).read_bytes() == b'exact bytes \xff\n'
    assert engine.containers == {}


def test_a_create_that_fails_leaves_no_folder(engine, bound, tmp_path):
    from tg_pipeline.errors import PipelineError
    paths = RunPaths(tmp_path / 'local')
    with pytest.raises(PipelineError):
        lifecycle.run(bound, make_spec(engine, image=None), paths, console=Console(quiet=True))  # an image the engine lacks
    assert not paths.dir.exists() or list(paths.dir.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() != 0, reason='hands files over as root only')
def test_the_entry_point_hands_the_files_to_the_host_user(tmp_path):
    (tmp_path / 'run' / 'output').mkdir(parents=True)
    (tmp_path / 'run' / 'output' / 'table.csv').write_text('a,b\n')
    (tmp_path / 'logs').mkdir()
    entry.hand_over({protocol.ENV_HOST_OWNER: '12345:23456'}, (str(tmp_path / 'run'), str(tmp_path / 'logs')))
    for path in (tmp_path / 'run', tmp_path / 'run' / 'output' / 'table.csv', tmp_path / 'logs'):
        assert (path.stat().st_uid, path.stat().st_gid) == (12345, 23456)
    entry.hand_over({}, (str(tmp_path / 'run'),))  # no owner given (the host's user is root): nothing changes
    assert (tmp_path / 'run').stat().st_uid == 12345
