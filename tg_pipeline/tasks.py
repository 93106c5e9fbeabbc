"""What a project's dodo.py imports: ``from tg_pipeline.tasks import dodo_tasks`` (as ``tg-pipeline init`` writes
it), the one doit set-up of :mod:`tg_pipeline.workflow.main`."""
from tg_pipeline.workflow.main import dodo_tasks

__all__ = ['dodo_tasks']
