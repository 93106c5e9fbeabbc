"""housekeeping._plan over stub images: which dependency images stay (no engine needed)."""
from types import SimpleNamespace

from tg_pipeline.image.housekeeping import _plan

PROJECT = {'tg_pipeline.project': 'p-1'}


def image(id_, created, job=None, deps_of=None, stands_on=None):
    labels = {**PROJECT, **({'tg_pipeline.job': job} if job else {}),
              **({'tg_pipeline.deps': deps_of} if deps_of else {})}
    return SimpleNamespace(id=id_, labels=labels, tags=[],
                           attrs={'Created': created, 'Config': {'Image': stands_on or ''}})


def test_the_newest_dependency_image_of_a_job_stays_without_a_job_image_on_it_unless_keep_is_0():
    """A registry-free run_remote leaves no job image here, only the dependency image it composed on: cleanup
    keeps that one (the next code edit composes on it again instead of a pip build); an older one goes."""
    old = image('sha256:old', '2026-11-01T00:00:00Z', deps_of='Train')
    new = image('sha256:new', '2026-11-02T00:00:00Z', deps_of='Train')
    other = image('sha256:other', '2026-10-01T00:00:00Z', deps_of='Eval')
    remove, kept, _ = _plan([old, new, other], keep=2, used=set())
    assert [i.id for i in remove] == ['sha256:old'] and {i.id for i in kept} == {'sha256:new', 'sha256:other'}
    remove, kept, _ = _plan([old, new, other], keep=0, used=set())
    assert {i.id for i in remove} == {'sha256:old', 'sha256:new', 'sha256:other'} and kept == []


def test_a_dependency_image_a_kept_job_image_stands_on_or_a_container_uses_stays():
    base = image('sha256:base', '2026-11-01T00:00:00Z', deps_of='Train')
    newest = image('sha256:newest', '2026-11-03T00:00:00Z', deps_of='Train')
    used = image('sha256:used', '2026-10-01T00:00:00Z', deps_of='Train')
    job = image('sha256:job', '2026-11-02T00:00:00Z', job='Train', stands_on='sha256:base')
    remove, kept, _ = _plan([base, newest, used, job], keep=1, used={'sha256:used'})
    assert remove == [] and {i.id for i in kept} == {'sha256:base', 'sha256:newest', 'sha256:used', 'sha256:job'}
