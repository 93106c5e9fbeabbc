"""The original's module layout (``tg.common.delivery.ssh_docker``), for code written against it."""
from tg_pipeline.api import (AttachedExecutor, LocalExecutor, RemoteExecutor, SSHAttachedExecutor, SSHDockerConfig, SSHDockerOptions, SSHLocalExecutor, SSHRemoteExecutor)

__all__ = ['SSHDockerOptions', 'SSHDockerConfig', 'SSHAttachedExecutor', 'SSHLocalExecutor', 'SSHRemoteExecutor',
           'AttachedExecutor', 'LocalExecutor', 'RemoteExecutor']
