"""Bad input stops before anything is built, with an error that names the problem and the fix: the cases that
need no engine (a factory that raises or returns no job, a module that fails to import, code next to the
source roots). The others are in tests/integration/test_bad_input.py.
"""
import re


def user_error(project, job):
    """The failed serialize of ``job``: our one ERROR/TIP paragraph, and the frames it shows."""
    result = project.doit('serialize', f'job={job}', check=False)
    assert result.returncode == 1
    paragraph = result.stderr[result.stderr.index('ERROR: '):]
    assert result.stderr.count('ERROR: ') == 1 and paragraph.count('\nTIP: ') == 1, result.stderr
    for forbidden in ('Traceback', 'tg_pipeline', 'TaskError', 'site-packages', '<frozen'):
        assert forbidden not in result.stderr, result.stderr
    files = re.findall(r'File "([^"]+)"', paragraph)
    assert files and all(f.startswith(str(project.root) + '/jobs/') for f in files), paragraph
    assert not project.path(f'build/{job}/resources/job.pkl').exists()
    return paragraph


def test_an_init_that_raises_shows_only_the_users_frames(project_factory):
    project = project_factory('raising_init')
    paragraph = user_error(project, 'Raising')
    assert paragraph.startswith(f"ERROR: {project.path('pipeline.toml')}:9, key 'jobs.Raising.factory': factory "
                                "'jobs.raising:Trainer' raised ValueError: rate must be positive, not -1\n")
    assert f'File "{project.path("jobs/raising.py")}", line 12, in __init__' in paragraph
    assert f'File "{project.path("jobs/raising.py")}", line 6, in checked_rate' in paragraph
    assert f'TIP: fix it in your code at {project.path("jobs/raising.py")}:6: ' in paragraph
    project.edit('pipeline.toml', 'rate = -1', 'rate = 0.5')  # the fix: serialize works
    project.doit('serialize', 'job=Raising')
    assert project.path('build/Raising/resources/job.pkl').exists()


def test_a_module_that_fails_to_import_shows_only_the_users_frames(project_factory):
    project = project_factory('raising_init')
    paragraph = user_error(project, 'BrokenImport')
    assert "importing jobs.broken_import (factory 'jobs.broken_import:Job') raised KeyError: 'epoch'" in paragraph
    assert f'File "{project.path("jobs/broken_import.py")}", line 3, in <module>' in paragraph


def test_a_factory_that_returns_no_job_is_refused(project_factory):
    project = project_factory('not_a_job')
    result = project.doit('serialize', 'job=Settings', check=False)
    assert result.returncode == 1
    assert f"ERROR: {project.path('pipeline.toml')}:9, key 'jobs.Settings.factory': factory 'jobs.settings:make' " \
           "returned a dict ({'epochs': 3, 'rate': 0.1}), which is no job: it has no run() method and is not " \
           "callable" in result.stderr
    assert f'TIP: make {project.path("jobs/settings.py")}:4 return the job: an object with a run() method' \
        in result.stderr
    assert result.stderr.count('ERROR: ') == 1 and 'Traceback' not in result.stderr
    assert not project.path('build/Settings/resources/job.pkl').exists()


def test_a_module_next_to_the_source_roots_is_refused_before_the_build(project_factory):
    """helpers.py in the project root imports fine here (the project folder is on sys.path) but is not in the
    sdist: the import check names it, its file and the fix, and the fix works."""
    project = project_factory('outside_roots')
    result = project.doit('sdist', 'job=UsesHelpers', check=False)
    assert result.returncode == 1
    assert (f"ERROR: job UsesHelpers imports 'helpers' (in {project.path('jobs/uses_helpers.py')}:2) from "
            f"{project.path('helpers.py')}, which is in the project folder but outside the source roots (jobs): the "
            "image would not have it") in result.stderr
    assert ('TIP: move helpers.py into a folder of its own, helpers/__init__.py, and add that folder to source_roots '
            'in [package] of pipeline.toml: source_roots = ["jobs", "helpers"]') in result.stderr
    assert result.stderr.count('ERROR: ') == 1 and 'Traceback' not in result.stderr
    assert not project.path('build/UsesHelpers/context').exists()
    project.path('helpers').mkdir()
    project.path('helpers.py').rename(project.path('helpers/__init__.py'))
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', 'source_roots = ["jobs", "helpers"]')
    project.doit('sdist', 'job=UsesHelpers')


def test_a_package_next_to_the_source_roots_is_refused_before_the_build(project_factory):
    project = project_factory('outside_roots')
    result = project.doit('sdist', 'job=UsesLib', check=False)
    assert result.returncode == 1
    assert (f"ERROR: job UsesLib imports 'lib' (in {project.path('jobs/uses_lib.py')}:2) from "
            f"{project.path('lib/__init__.py')}, which is in the project folder but outside") in result.stderr
    assert 'TIP: add its folder to source_roots in [package] of pipeline.toml: source_roots = ["jobs", "lib"]' \
        in result.stderr
    project.edit('pipeline.toml', 'source_roots = ["jobs"]', 'source_roots = ["jobs", "lib"]')  # the TIP
    project.doit('sdist', 'job=UsesLib')
    assert project.path('build/UsesLib/context/useslib__0_0_1-0.0.1.tar.gz').exists()
