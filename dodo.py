"""doit tasks of this project: `doit list` shows them, `doit run_local job=ExampleJob` runs one."""
from tg_pipeline.tasks import dodo_tasks

globals().update(dodo_tasks(__file__))
