"""Two projects on one engine: each sees and acts on its own runs only (label ``tg_pipeline.project``).
Another project's run is reached only by its explicit run id, is named with its owner, and is never
collected here; ``all_projects`` only widens what status lists."""
import datetime
import io
import pickle

import pytest

from fakes.engine import FakeEngine
from fakes.runs import IMAGE, local_backend, make_spec
from tg_pipeline.errors import JobFailed, PipelineError
from tg_pipeline.console import Console
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs import lifecycle
from tg_pipeline.runs.lifecycle import run_container
from tg_pipeline.runs.lifecycle import Scope

FOREVER = 'tgtest-forever:1'
LONG_AGO = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture
def engine():
    engine = FakeEngine()
    engine.program(IMAGE, stdout=b'hello\n', files={'result.pkl': pickle.dumps(45)})
    engine.program(FOREVER, stdout=b'tick\n', run_until_stopped=True)
    return engine


@pytest.fixture
def backend(client):
    return local_backend(client)


@pytest.fixture
def paths(tmp_path):
    """Each project's RunPaths: its own build folder."""
    return {'a': RunPaths(tmp_path / 'a' / 'local'), 'b': RunPaths(tmp_path / 'b' / 'local')}


A, B = Scope('Greeter', 'proj-a'), Scope('Greeter', 'proj-b')


def start(engine, client, project: str, image: str = IMAGE, ended: bool = False) -> str:
    """A detached run of job Greeter for project ``a`` (alice) or ``b`` (bob); its run id."""
    owner = {'a': 'alice', 'b': 'bob'}[project]
    spec = make_spec(engine, image, project=f'proj-{project}', owner=owner)
    handle = run_container(client, spec, detach=True, console=Console(quiet=True))
    if ended:
        engine.finish(handle.ref)
    return handle.run_id


def on_engine(engine) -> dict:
    """run id -> (project, status) of the containers left on the engine."""
    return {c.labels['tg_pipeline.run_id']: (c.labels['tg_pipeline.project'], c.status)
            for c in engine.containers.values()}


def only_reads_since(engine, mark: int) -> bool:
    return all(c.method == 'GET' for c in engine.calls[mark:])


def test_status_lists_the_projects_own_runs_and_all_projects_reads_both(engine, client, backend, paths):
    mine, theirs = start(engine, client, 'a'), start(engine, client, 'b', ended=True)
    mark = len(engine.calls)
    assert [r['run_id'] for r in lifecycle.status(backend, A, paths['a'], console=Console(out=io.StringIO()))] == [mine]
    assert [r['run_id'] for r in lifecycle.status(backend, B, paths['b'], console=Console(out=io.StringIO()))] == \
        [theirs]
    out = io.StringIO()
    rows = lifecycle.status(backend, Scope('Greeter', 'proj-a', all_projects=True), paths['a'],
                            console=Console(out=out))
    owners = {r['run_id']: (r['owner'], r['state']) for r in rows}
    assert owners == {mine: ('alice', 'running'), theirs: ('bob (proj-b)', 'exited 0')}
    assert 'bob (proj-b)' in out.getvalue() and out.getvalue().startswith("# every project's runs on local: 2 run(s)")
    [row] = lifecycle.status(backend, A, paths['a'], run_id=theirs,
                             console=Console(out=io.StringIO()))  # by its id: named
    assert (row['run_id'], row['owner']) == (theirs, 'bob (proj-b)')
    assert only_reads_since(engine, mark)  # read only: nothing stopped, collected or removed
    assert on_engine(engine) == {mine: ('proj-a', 'running'), theirs: ('proj-b', 'exited')}
    assert not paths['a'].dir.exists() and not paths['b'].dir.exists()


def test_without_a_run_id_nothing_reaches_another_projects_runs(engine, client, backend, paths):
    ended, running = start(engine, client, 'b', ended=True), start(engine, client, 'b', FOREVER)
    mark = len(engine.calls)
    with pytest.raises(PipelineError, match='job Greeter has no run on local'):
        lifecycle.result(backend, A, paths['a'])
    with pytest.raises(PipelineError, match='job Greeter has no run on local'):
        lifecycle.logs(backend, A, paths['a'], console=Console(out=io.StringIO()))
    with pytest.raises(PipelineError, match='job Greeter has no running run on local'):
        lifecycle.stop(backend, A, paths['a'], console=Console(out=io.StringIO()))
    assert lifecycle.status(backend, A, paths['a'], console=Console(out=io.StringIO())) == []
    assert lifecycle.cleanup(backend, 'proj-a', 0, lambda job: paths['a'], console=Console(out=io.StringIO())) == []
    assert only_reads_since(engine, mark)
    assert on_engine(engine) == {ended: ('proj-b', 'exited'), running: ('proj-b', 'running')}
    assert not paths['a'].dir.exists()


def test_the_latest_run_is_the_projects_own(engine, client, backend, paths):
    mine = start(engine, client, 'a', ended=True)
    theirs = start(engine, client, 'b', ended=True)  # started later, on the same engine
    assert lifecycle.result(backend, A, paths['a']).run_id == mine
    assert on_engine(engine) == {theirs: ('proj-b', 'exited')}
    assert paths['a'].saved_ids() == {mine}


def test_stop_by_run_id_says_whose_it_is_and_leaves_it_to_its_owner(engine, client, backend, paths):
    theirs = start(engine, client, 'b', FOREVER)
    out = io.StringIO()
    assert lifecycle.stop(backend, A, paths['a'], run_id=theirs, console=Console(out=out)) is None
    assert (f'Stopped run {theirs} of job Greeter on local; it belongs to project proj-b of bob, who collects it'
            in out.getvalue())
    assert on_engine(engine) == {theirs: ('proj-b', 'exited')}  # stopped, not collected
    assert engine.find('GET', '/containers/*/archive') == [] and engine.removed == []
    assert not paths['a'].dir.exists()
    with pytest.raises(JobFailed, match='killed by signal 15') as owner:  # bob collects it
        lifecycle.result(backend, B, paths['b'], run_id=theirs)
    assert owner.value.exit_code == 143 and paths['b'].out(theirs).read_bytes() == b'tick\n'
    assert engine.containers == {}


def test_result_of_another_projects_run_names_the_owning_project(engine, client, backend, paths):
    theirs = start(engine, client, 'b', ended=True)
    with pytest.raises(PipelineError) as refused:
        lifecycle.result(backend, A, paths['a'], run_id=theirs)
    assert refused.value.message == (f'run {theirs} belongs to project proj-b of bob: only that project '
                                     'collects its result')
    assert f'doit logs job=Greeter where=local run_id={theirs}' in refused.value.hint
    assert on_engine(engine) == {theirs: ('proj-b', 'exited')} and not paths['a'].dir.exists()
    assert lifecycle.result(backend, B, paths['b'], run_id=theirs).value == 45


def test_logs_of_another_projects_run_are_read_only(engine, client, backend, paths):
    theirs = start(engine, client, 'b', ended=True)
    mark = len(engine.calls)
    out = io.StringIO()
    assert lifecycle.logs(backend, A, paths['a'], run_id=theirs, console=Console(out=out)) is None
    head, _, rest = out.getvalue().partition('\n')
    assert head.endswith('(exited 0) (project proj-b of bob: read only)') and rest == 'hello\n'
    assert only_reads_since(engine, mark)
    assert on_engine(engine) == {theirs: ('proj-b', 'exited')} and not paths['a'].dir.exists()


def test_following_another_projects_run_streams_it_without_collecting(engine, client, backend, paths):
    theirs = start(engine, client, 'b')  # running: following it lets it end
    out = io.StringIO()
    assert lifecycle.logs(backend, A, paths['a'], run_id=theirs, follow=True, console=Console(out=out)) is None
    assert 'following (project proj-b of bob: read only)' in out.getvalue() and out.getvalue().endswith('hello\n')
    assert on_engine(engine) == {theirs: ('proj-b', 'exited')} and not paths['a'].dir.exists()


def test_cleanup_removes_only_the_projects_old_ended_runs(engine, client, backend, paths, tmp_path):
    moment = [LONG_AGO]
    engine.clock = lambda: moment[0]
    old = start(engine, client, 'a', ended=True)
    theirs_old = start(engine, client, 'b', ended=True)
    running = start(engine, client, 'a', FOREVER)  # started long ago, still running
    moment[0] = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    recent = start(engine, client, 'a', ended=True)
    out = io.StringIO()
    collected_into = {}
    removed = lifecycle.cleanup(backend, 'proj-a', 1, lambda job: collected_into.setdefault(job, paths['a']),
                                console=Console(out=out))
    assert removed == [old] and list(collected_into) == ['Greeter']
    assert on_engine(engine) == {theirs_old: ('proj-b', 'exited'), running: ('proj-a', 'running'),
                                 recent: ('proj-a', 'exited')}
    assert paths['a'].saved_ids() == {old} and paths['a'].out(old).read_bytes() == b'hello\n'
    assert paths['a'].read_record(old)['project'] == 'proj-a'
    assert f'removed run {old} of job Greeter' in out.getvalue()
    assert lifecycle.cleanup(backend, 'proj-b', 1, lambda job: paths['b'],
                             console=Console(out=io.StringIO())) == [theirs_old]
    assert paths['b'].saved_ids() == {theirs_old}


def test_container_is_created_from_the_image_id_with_its_identity_as_labels(engine, client):
    built = engine.image(IMAGE)
    spec = make_spec(engine, project='proj-a', owner='alice', reference=IMAGE)
    engine.program(built.id, stdout=b'the image that was built\n', create_image=False)
    engine.add_image(IMAGE)  # another build re-points the tag
    handle = run_container(client, spec, detach=True, console=Console(quiet=True))
    create = engine.last('POST', '/containers/create')
    assert create.body['Image'] == built.id and built.id.startswith('sha256:')
    assert engine.container(handle.ref).image is built
    labels = create.body['Labels']
    assert {k: labels[f'tg_pipeline.{k}'] for k in ('project', 'owner', 'image', 'run_id', 'job')} == {
        'project': 'proj-a', 'owner': 'alice', 'image': built.id, 'run_id': handle.run_id, 'job': 'Greeter'}
    assert (handle.project, handle.owner, handle.image) == ('proj-a', 'alice', built.id)
