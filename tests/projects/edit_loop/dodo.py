from tg_pipeline.tasks import dodo_tasks

globals().update(dodo_tasks(__file__))
