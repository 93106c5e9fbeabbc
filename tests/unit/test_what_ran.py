"""What ran, without an engine: the content-addressed store, the git state and its patch, the payload described
without running it, the notebook cells, the diff's sections; and `doit show / runs / diff / export` on attached
runs of a fixture project (git work tree or not). The same against the real engines, the remote and a swarm, and
rerun: tests/integration/test_what_ran.py."""
import json
import os
import pickle
import subprocess
import threading
from pathlib import Path

import cloudpickle
import pytest

from tg_pipeline.provenance import compare, gitstate, notebook, payload, record as records, shown
from tg_pipeline.provenance.store import Store

GIT = ['git', '-c', 'user.email=t@example.invalid', '-c', 'user.name=t']


def git(folder, *args):
    return subprocess.run([*GIT, *args], cwd=folder, check=True, capture_output=True, text=True).stdout


def git_project(project) -> str:
    """The fixture project as a git work tree with one commit; that commit's id."""
    git(project.root, 'init', '-q', '-b', 'main')
    git(project.root, 'add', '-A')
    git(project.root, 'commit', '-qm', 'first')
    return git(project.root, 'rev-parse', 'HEAD').strip()


def kept(project, where: str = 'attached') -> list[dict]:
    return [r for _, r in records.every(project.path('build'), where)]


# --- the store -------------------------------------------------------------------------------------------
def test_the_store_keeps_one_copy_per_content_and_sweeps_what_nothing_references(tmp_path):
    store = Store(tmp_path / 'build')
    first = store.put('config', b'a = 1\n')
    assert store.put('config', b'a = 1\n') == first  # the same bytes: the same object, written once
    other = store.put('config', b'a = 2\n')
    source = tmp_path / 'x.tar.gz'
    source.write_bytes(b'sdist bytes')
    os.utime(source, (946684800, 946684800))
    sdist = store.put_file('sdist', source)
    assert store.path('sdist', sdist).stat().st_mtime == 946684800  # the time goes with it: same image config
    assert sorted(k for _, k, _ in store.objects()) == sorted([first, other, sdist])
    with store.lock(exclusive=True):
        removed, freed = store.sweep({('config', first), ('sdist', sdist)})
    assert (removed, freed) == (1, len(b'a = 2\n'))
    assert store.has('config', first) and not store.has('config', other)
    with pytest.raises(ValueError):
        store.path('config', '../escape')


# --- git ---------------------------------------------------------------------------------------------------
def test_the_git_state_keeps_uncommitted_changes_under_the_source_roots_as_a_patch_git_applies(project, tmp_path):
    commit = git_project(project)
    clean = gitstate.git_state(project.root, [project.path('jobs')])
    assert (clean.commit, clean.branch, clean.dirty, clean.patch) == (commit, 'main', False, b'')
    project.edit('jobs/example_job.py', "log('SUCCESS')", "log('SUCCESS, edited')")
    project.write('jobs/added.py', 'ADDED = "new file"\nno_newline = True')
    project.write('notes.txt', 'outside the source roots\n')
    state = gitstate.git_state(project.root, [project.path('jobs')])
    assert state.dirty and state.changed == ['jobs/example_job.py', 'jobs/added.py']
    assert b'notes.txt' not in state.patch
    clone = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', str(project.root), str(clone)], check=True)
    subprocess.run(['git', 'apply', '-'], input=state.patch, cwd=clone, check=True)
    for name in ('jobs/example_job.py', 'jobs/added.py'):
        assert (clone / name).read_bytes() == project.path(name).read_bytes()
    assert git(project.root, 'status', '--porcelain').count('??') == 2  # nothing was added to the index


def test_untracked_files_the_sdist_leaves_out_do_not_make_the_tree_dirty(project):
    """A job imported here writes jobs/__pycache__/ in a project that does not ignore it: the code that ran is
    still the commit's."""
    commit = git_project(project)
    project.write('jobs/__pycache__/example_job.cpython-311.pyc', 'bytecode')
    project.write('jobs/.scratch.py', 'hidden = True\n')
    project.write('jobs/.ipynb_checkpoints/notes.py', 'x = 1\n')
    clean = gitstate.git_state(project.root, [project.path('jobs')])
    assert (clean.commit, clean.dirty, clean.changed) == (commit, False, [])
    project.write('jobs/helper.py', 'y = 2\n')
    assert gitstate.git_state(project.root, [project.path('jobs')]).changed == ['jobs/helper.py']


def test_no_git_state_outside_a_work_tree_and_a_tree_without_commits(project):
    assert gitstate.git_state(project.root, [project.path('jobs')]) is None
    git(project.root, 'init', '-q', '-b', 'main')
    fresh = gitstate.git_state(project.root, [project.path('jobs')])
    assert fresh.commit == '' and fresh.dirty and 'jobs/example_job.py' in fresh.changed


# --- the payload, described without running it ------------------------------------------------------------
class Trap:
    """Loading it would write a file: a description must not."""

    def __init__(self, path):
        self.path, self.rate = path, 0.5

    def __setstate__(self, state):
        Path(state['path']).write_text('loaded!')


def test_a_payload_is_described_by_its_class_and_attributes_without_running_its_code(tmp_path):
    trap = tmp_path / 'trap'
    lines = payload.describe('job', pickle.dumps(Trap(str(trap)), protocol=4))
    assert lines == ['job:', f'  {__name__}.Trap', f'    .path = {str(trap)!r}', '    .rate = 0.5']
    assert not trap.exists()
    with_variants = payload.describe('variants', pickle.dumps([('a', Trap('x')), ('b', Trap('y'))], protocol=4))
    assert with_variants[:3] == ['variants: 2', '  variant a:', f'    {__name__}.Trap']
    assert payload.describe('job', b'{"factory": "jobs.x:Job", "args": [1]}') == \
        ['job:', "  args = [1]", "  factory = 'jobs.x:Job'"]
    assert payload.describe('job', b'not a pickle')[0].startswith('job: 12 bytes, not described')


def test_a_class_and_a_function_pickled_by_value_are_named_as_such():
    namespace = {'__name__': '__main__'}
    exec('class Local:\n    def __init__(self):\n        self.n = 3\n\ndef helper():\n    return 1\n', namespace)
    assert payload.describe('job', cloudpickle.dumps(namespace['Local'](), protocol=4)) == \
        ['job:', '  Local (class pickled by value)', '    .n = 3']
    assert payload.describe('job', cloudpickle.dumps(namespace['helper'], protocol=4)) == \
        ['job:', '  helper (function pickled by value)']


def test_the_cells_that_defined_a_job_pickled_by_value_are_its_code():
    import linecache
    cell = 'class CellJob:\n    def run(self):\n        return 42\n'
    name = '/tmp/ipykernel_0/cell-1.py'  # as IPython names a cell: its source is in the line cache only
    linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
    namespace = {'__name__': '__main__'}
    exec(compile(cell, name, 'exec'), namespace)
    assert notebook.cell_sources({'job': namespace['CellJob']()}) == f'# ---- {name}\n{cell}'
    assert notebook.cell_sources({'job': Trap('x')}) == ''  # by reference: its code is in the sdist


# --- the diff's sections --------------------------------------------------------------------------------------
def test_the_configuration_section_says_each_changed_key_once_with_both_origins(tmp_path):
    store = Store(tmp_path)
    before = '[run]\nmemory_gb = 0.5  # pipeline.toml:11\ncpu = 1.0  # default\n\n' \
             '[jobs.A]\nmemory_gb = 0.5  # pipeline.toml:11\ncpu = 1.0  # default\n'
    after = before.replace('memory_gb = 0.5  # pipeline.toml:11', 'memory_gb = 1.0  # command line')
    a = {'run_id': 'a', 'config': store.put('config', before.encode())}
    b = {'run_id': 'b', 'config': store.put('config', after.encode())}
    section = compare.configuration_section(store, a, b)
    assert section.lines == ['jobs.A.memory_gb: 0.5 (pipeline.toml:11) -> 1.0 (command line) (also run.memory_gb)']
    assert compare.configuration_section(store, a, a).lines == []


def test_the_code_section_is_a_unified_diff_of_the_sources_and_the_payload_as_its_attributes(tmp_path):
    from tg_pipeline.package.sdist import sdist_archive
    store, roots = Store(tmp_path / 'build'), tmp_path / 'jobs'
    roots.mkdir()
    (roots / 'job.py').write_text('def f():\n    return 1\n')
    first = sdist_archive('p', '1', 'p__1', [roots], {'job': pickle.dumps(Trap('x'), protocol=4)})[1]
    (roots / 'job.py').write_text('def f():\n    return 2\n')
    second = sdist_archive('p', '1', 'p__1', [roots], {'job': pickle.dumps(Trap('y'), protocol=4)})[1]
    a = {'run_id': 'a', 'code': {'sdist': store.put('sdist', first)}}
    b = {'run_id': 'b', 'code': {'sdist': store.put('sdist', second)}}
    lines = compare.code_section(store, a, b).lines
    assert lines[:2] == ['--- a/jobs/job.py', '+++ b/jobs/job.py'] and '-    return 1' in lines
    assert '+    return 2' in lines and "-    .path = 'x'" in lines and "+    .path = 'y'" in lines
    assert compare.code_section(store, a, a).lines == []


def test_dependencies_added_removed_and_changed():
    old = {'packages': ['numpy==1.26.4', 'six==1.16.0', 'tqdm==4.0'], 'python': '3.11.2'}
    new = {'packages': ['numpy==2.0.0', 'six==1.16.0', 'torch==2.1.0'], 'python': '3.11.2'}
    store = Store(Path('/nonexistent'))
    store.read = lambda kind, key: json.dumps(old if key == 'o' else new).encode()
    store.has = lambda kind, key: True
    section = compare.dependencies_section(store, {'run_id': 'a', 'dependencies': {'key': 'o'}},
                                           {'run_id': 'b', 'dependencies': {'key': 'n'}})
    assert section.lines == ['+ torch==2.1.0', '- tqdm==4.0', '~ numpy==1.26.4 -> 2.0.0']


def test_the_runs_table_marks_a_dirty_tree_and_reads_exits_and_durations():
    record = {'run_id': 'R1', 'job': 'J', 'where': 'local', 'code': {'sdist': 'ab' * 32},
              'git': {'commit': 'c0ffee' * 6, 'dirty': True}, 'started': '2026-01-01T00:00:00.000+00:00'}
    ended = {'exit_code': 0, 'at': '2026-01-01T00:00:02.500+00:00'}
    table = shown.runs_table([(record, ended, '42'), ({**record, 'run_id': 'R2', 'git': None}, {}, '')])
    lines = table.splitlines()
    assert lines[0].split() == ['RUN', 'ID', 'JOB', 'WHERE', 'CODE', 'GIT', 'EXIT', 'DURATION', 'RESULT']
    assert lines[1].split() == ['R1', 'J', 'local', 'abababababab', 'c0ffeec0*', '0', '2.50', 's', '42']
    assert lines[2].split() == ['R2', 'J', 'local', 'abababababab', '-', '-', '-']


# --- the commands, on attached runs of a fixture project ------------------------------------------------------
def test_attached_runs_keep_what_ran_and_show_runs_diff_and_export_say_it(project, tmp_path):
    commit = git_project(project)
    project.doit('run_attached', 'job=Counter', 'jobs.Counter.args=[2, 0]')
    project.edit('jobs/counter.py', "print(f'line {i}'", "print(f'row {i}'")
    project.doit('run_attached', 'job=Counter', 'jobs.Counter.args=[3, 0]')
    first, second = kept(project)
    assert first['git'] == {**first['git'], 'commit': commit, 'dirty': False, 'branch': 'main'}
    assert second['git']['dirty'] and second['git']['changed'] == ['jobs/counter.py']
    assert first['ended']['exit_code'] == 0 and first['ended']['result'] == '2'

    runs = project.doit('runs').stdout.splitlines()
    assert [line.split()[:6] for line in runs[1:]] == [
        [first['run_id'], 'Counter', 'attached', first['code']['sdist'][:12], commit[:8], '0'],
        [second['run_id'], 'Counter', 'attached', second['code']['sdist'][:12], commit[:8] + '*', '0']]
    assert runs[1].endswith('  2') and runs[2].endswith('  3')  # the one-line result

    show = project.doit('show', f'run_id={second["run_id"]}').stdout
    assert f'git       {commit} on main, dirty under the source roots (1 file(s) changed: jobs/counter.py)' in show
    assert "command   doit run_attached job=Counter 'jobs.Counter.args=[3, 0]'" in show  # as pasted again
    assert 'args = [3, 0]  # command line' in show  # the configuration, with each value's origin

    diff = project.doit('diff', f'run_a={first["run_id"]}', f'run_b={second["run_id"][:22]}', check=False)
    assert diff.returncode == 1, diff.stderr
    assert "-            print(f'line {i}', flush=True)\n+            print(f'row {i}', flush=True)" in diff.stdout
    # the payload: a job of pipeline.toml travels as its reference, shown as its factory's arguments
    assert '-    args = [2, 0]' in diff.stdout and '+    args = [3, 0]' in diff.stdout
    assert 'jobs.Counter.args: [2, 0] (command line) -> [3, 0] (command line)' in diff.stdout
    for same in ('## dependencies: the same', '## base image: the same', '## host: the same'):
        assert same in diff.stdout
    assert project.doit('diff', f'run_a={first["run_id"]}', f'run_b={first["run_id"]}').returncode == 0

    project.doit('export', f'run_id={first["run_id"]}', f'dest={tmp_path / "first"}')
    assert (tmp_path / 'first' / 'jobs' / 'counter.py').read_text() == \
        project.read('jobs/counter.py').replace("f'row", "f'line")
    assert (tmp_path / 'first' / 'what-ran' / 'payload' / 'job.pkl').exists()
    assert 'args = [2, 0]' in (tmp_path / 'first' / 'what-ran' / 'configuration.toml').read_text()


def test_a_project_that_is_no_git_tree_says_nothing_about_git(project):
    result = project.doit('run_attached', 'job=Counter', 'jobs.Counter.args=[1, 0]')
    assert 'git' not in result.stderr.lower()
    (record,) = kept(project)
    assert record['git'] is None
    show = project.doit('show', f'run_id={record["run_id"]}')
    assert 'git       not a git work tree' in show.stdout and show.stderr == ''
    assert project.doit('runs').stdout.splitlines()[1].split()[4] == '-'


def test_the_commands_say_what_they_need(project):
    show = project.doit('show', check=False)
    assert show.returncode == 1
    assert "ERROR: key 'run_id': doit show needs a run: run_id=RUN_ID\nTIP: doit runs lists" in show.stderr
    diff = project.doit('diff', 'run_a=nope', 'run_b=nada', check=False)
    assert diff.returncode == 2 and 'ERROR: no run nope is kept in ' in diff.stderr
    assert project.doit('runs').stdout.startswith('no run is kept in ')
    assert '--run_a=VALUE' in project.doit('help', 'diff').stdout
    bad = project.doit('runs', 'where=moon', check=False)
    assert bad.returncode == 1 and 'where=moon is not local, remote, swarm or attached' in bad.stderr


def test_cleanup_s_sweep_keeps_what_kept_runs_reference(project):
    from tg_pipeline.workflow.context import Context
    from tg_pipeline.workflow.what_ran import sweep
    from tg_pipeline import config
    project.doit('run_attached', 'job=Counter', 'jobs.Counter.args=[1, 0]')
    project.doit('run_attached', 'job=Counter', 'jobs.Counter.args=[1, 0]')
    store = Store(project.path('build'))
    objects = sorted(store.objects())
    assert [kind for kind, _, _ in objects].count('sdist') == 1  # two runs of the same code: one copy
    ctx = Context(config.load(project.path('pipeline.toml'), environ={}))
    sweep(ctx)
    assert sorted(store.objects()) == objects
    for path, _ in records.every(project.path('build')):
        path.unlink()
    sweep(ctx)
    assert list(store.objects()) == []


def test_recording_hands_the_run_paths_to_its_backend():
    """lifecycle.run prepares a run with its paths (local run folders as bind mounts): the Recording that keeps
    what ran passes them on to the backend it wraps."""
    from tg_pipeline.workflow.recording import Recording

    class Backend:
        def prepare(self, spec, environ=None, paths=None):
            self.given = (spec, environ, paths)
            return type('Handle', (), {'run_id': 'r1'})()

    inner = Backend()
    recording = Recording(inner, lambda run_id: ('path', {'run_id': run_id}))
    assert recording.prepare('spec', {'A': '1'}, 'paths').run_id == 'r1'
    assert inner.given == ('spec', {'A': '1'}, 'paths')
    assert recording.record == {'run_id': 'r1'}


def test_a_reference_declared_on_another_line_is_the_same_job_and_other_arguments_are_not():
    import pickle
    from tg_pipeline.provenance import compare
    from tg_pipeline.provenance.sources import SdistFiles
    from tg_pipeline.runtime.reference import make_record

    def payload(args, line):
        return SdistFiles(payload={'job': pickle.dumps(make_record('Train', 'jobs.t:Train', args, {}, line=line))})
    assert compare._payload_diff(payload([1], 12), payload([1], 14), {}, {}) == []  # a line added above it
    changed = compare._payload_diff(payload([1], 12), payload([2], 12), {}, {})
    assert '-    args = [1]' in changed and '+    args = [2]' in changed


def test_what_a_record_reads_ahead_is_its_value_or_its_error_when_taken():
    from tg_pipeline.workflow.recording import Ahead
    release = threading.Event()
    ahead = Ahead(lambda: release.wait(60) and 'facts')
    release.set()  # the caller went on while the call waited: it runs in a thread of its own
    assert ahead.result() == 'facts'

    def broken():
        raise OSError('engine gone')
    with pytest.raises(OSError, match='engine gone'):
        Ahead(broken).result()
