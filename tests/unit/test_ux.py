"""What a new user meets in the first hour, with no engine: every setting is listed by `doit help TASK` and
works on the command line, `doit config`, the result at `doit -v 0`, and `doit graph`. (The wheel installed in a
fresh environment, `doit clean` and the image: tests/integration/test_ux.py.)"""
import shutil
import tomllib

from conftest import ran


# --- the result shows at doit -v 0 ----------------------------------------------------------------------
def test_the_result_shows_at_verbosity_0(project):
    quiet = project.doit('-v', '0', 'run_attached', 'job=Counter', 'jobs.Counter.args=[3, 0]')
    assert quiet.stdout.splitlines()[-1] == 'Result: 3'
    loud = project.doit('run_attached', 'job=Counter', 'jobs.Counter.args=[3, 0]')
    assert loud.stdout.splitlines()[-4:] == ['line 0', 'line 1', 'line 2', 'Result: 3']


# --- every setting on the command line, listed by doit help ---------------------------------------------
def test_doit_help_lists_the_settings_of_a_task_with_their_values_now(project):
    text = project.doit('help', 'run_local').stdout
    for option in ('--job=NAME', '--detach', '--memory=GB', '--cpu=CORES', '--host=TEXT', '--registry=TEXT',
                   '--run.memory_gb=N', '--docker.image_prefix=TEXT', '--swarm.labels={...}', '--jobs.NAME.KEY=VALUE'):
        assert f'\n  {option} ' in text, option
    assert 'memory limit in GB, 0 = none (as run.memory_gb); now 0.5 (pipeline.toml:11)' in text
    assert 'image_prefix=TEXT  put before every image name, e.g. team-; now "tgtest-" (pipeline.toml:6)' in text
    one_job = project.doit('help', 'run_local:ResultJob').stdout
    assert '--jobs.ResultJob.args=[...]  positional arguments of the factory; now [10] (pipeline.toml:45)' in one_job
    for task, options in (('status', ['--where=VALUE', '--run_id=VALUE', '--all_projects']),
                          ('logs', ['--where=VALUE', '--run_id=VALUE', '--follow']),
                          ('cleanup', ['--where=VALUE', '--days=VALUE', '--keep=VALUE']),
                          ('graph', ['--job=NAME', '--all', '--files'])):
        text = project.doit('help', task).stdout
        assert all(f'\n  {o} ' in text for o in options), (task, text)


def test_a_setting_given_doits_way_makes_the_same_configuration(project):
    plain = project.doit('config', 'memory=2', 'run.env=A,B').stdout
    assert project.doit('config', '--memory=2', '--run.env', 'A,B').stdout == plain
    assert tomllib.loads(plain)['run']['memory_gb'] == 2.0
    counted = project.doit('run_attached:Counter', '--jobs.Counter.args', '[2, 0]')
    assert counted.stdout.splitlines()[-3:] == ['line 0', 'line 1', 'Result: 2']
    twice = project.doit('config', 'memory=1', '--memory=2', check=False)
    assert twice.returncode == 2 and twice.stdout == ''
    assert "ERROR: key 'memory': memory is given twice: memory=1 and --memory=2\n" \
           'TIP: give it once: doit config memory=2' in twice.stderr


def test_doit_config_prints_valid_toml_with_each_value_s_origin(project):
    out = project.doit('config', 'cpu=3').stdout
    settings = tomllib.loads(out)
    assert (settings['run']['memory_gb'], settings['run']['cpu']) == (0.5, 3.0)
    assert settings['jobs']['ResultJob']['args'] == [10]
    lines = out.splitlines()
    assert 'memory_gb = 0.5  # pipeline.toml:11' in lines and 'cpu = 3.0  # command line' in lines


# --- doit graph ---------------------------------------------------------------------------------------------
def graph_now(project, *args) -> dict:
    """step -> what `doit graph` says doit would do with it now; and the DOT file it wrote."""
    out = project.doit('graph', *args).stdout
    assert f'Task graph written to {project.path("build/graph.dot")}' in out
    if shutil.which('dot'):
        assert project.path('build/graph.png').read_bytes()[:4] == b'\x89PNG'
    lines = [line.split(None, 1) for line in out.splitlines() if line and line[0] != '.' and ':' in line.split()[0]]
    return {name: now for name, now in lines}


def test_graph_draws_the_chosen_job_and_marks_what_would_run_now(project):
    fresh = graph_now(project, 'job=ResultJob')
    assert list(fresh) == [f'{step}:ResultJob' for step in ('serialize', 'sdist', 'dockerfile', 'build_image',
                                                             'run_attached', 'run_local', 'push', 'run_remote',
                                                             'run_swarm')]  # no lifecycle step, no other job
    assert fresh['serialize:ResultJob'].startswith('runs now')
    assert fresh['run_local:ResultJob'] == 'runs whenever asked'
    dot = project.read('build/graph.dot')
    assert '"sdist:ResultJob" -> "build_image:ResultJob";' in dot and 'ExampleJob' not in dot
    assert '"serialize:ResultJob" [label="serialize:ResultJob\\nruns now: ' in dot
    project.doit('sdist', 'dockerfile', 'job=ResultJob')
    built = graph_now(project, 'job=ResultJob')
    assert [built[f'{s}:ResultJob'] for s in ('serialize', 'sdist', 'dockerfile')] == ['up to date'] * 3
    assert built['build_image:ResultJob'] == 'runs now (a target is missing)'
    new_args = graph_now(project, 'job=ResultJob', 'jobs.ResultJob.args=[5]')  # the job's settings changed
    assert new_args['serialize:ResultJob'].startswith('runs now')
    assert new_args['sdist:ResultJob'] == 'runs if a step before it changes its files (after serialize:ResultJob)'
    assert new_args['dockerfile:ResultJob'] == 'up to date'
    rerun = project.doit('sdist', 'job=ResultJob', 'jobs.ResultJob.args=[5]').stdout  # doit agrees
    assert ran(rerun, 'serialize:ResultJob') and ran(rerun, 'sdist:ResultJob')


def test_graph_shows_the_lifecycle_steps_and_the_files_when_asked(project):
    everything = graph_now(project, 'job=ResultJob', 'all=1', 'files=1')
    assert {'status:ResultJob', 'logs:ResultJob', 'stop:ResultJob', 'result:ResultJob'} <= set(everything)
    dot = project.read('build/graph.dot')
    assert '"jobs/result_job.py" -> "serialize:ResultJob" [style=dashed' in dot
    assert '"sdist:ResultJob" -> "build/ResultJob/context/resultjob__0_0_0-0.0.0.tar.gz" [style=dashed' in dot
    assert '"build/ResultJob/image.json" -> "push:ResultJob" [style=dashed' in dot
    assert '"sdist:ResultJob" -> "build_image:ResultJob";' in dot  # the steps' own edges stay
