"""The up-to-date checks a no-change run makes before anything runs (no Docker)."""
import json
import textwrap

from tg_pipeline import config
from tg_pipeline.workflow import build_steps as steps
from tg_pipeline.workflow.context import Context
from tg_pipeline.errors import DockerUnavailable


def test_without_an_engine_the_image_is_not_current_so_the_build_step_says_why(tmp_path, monkeypatch):
    path = tmp_path / 'pipeline.toml'
    path.write_text(textwrap.dedent('''\
        [jobs.Train]
        factory = "jobs.train:Train"
        '''))
    ctx = Context(config.load(path, environ={}), {})
    record = ctx.paths('Train').image
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({'image_id': 'sha256:' + '0' * 64}))

    def no_engine():
        raise DockerUnavailable('no Docker engine answers at unix:///nowhere.sock', hint='start one')
    monkeypatch.setattr('tg_pipeline.image.build.local_engine', no_engine)
    assert steps.image_current(ctx, 'Train') is False
