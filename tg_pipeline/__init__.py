"""tg_pipeline: deliver a job with its current source code to Docker, here or on a remote host.

The Python API is imported on first use, so that ``doit`` loading the tasks stays fast.
"""
__version__ = '0.1.0'

_API = {'Packaging', 'Containering', 'SSHDockerOptions', 'SSHDockerConfig', 'SSHAttachedExecutor',
        'SSHLocalExecutor', 'SSHRemoteExecutor', 'AttachedExecutor', 'LocalExecutor', 'RemoteExecutor', 'SwarmExecutor',
        'Executor', 'install_package_and_get_loader'}
__all__ = sorted(_API | {'ExampleJob', 'PipelineError'})


def __getattr__(name):
    if name in _API:
        from tg_pipeline import api
        return getattr(api, name)
    if name == 'ExampleJob':
        from tg_pipeline.delivery.example_job import ExampleJob
        return ExampleJob
    if name == 'PipelineError':
        from tg_pipeline.errors import PipelineError
        return PipelineError
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
