"""The example job of pipeline.toml: tg_pipeline's own ExampleJob (logs which variables it sees)."""
from tg_pipeline.delivery.example_job import ExampleJob

__all__ = ['ExampleJob']
