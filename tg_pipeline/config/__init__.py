"""The configuration: pipeline.toml, the environment, the command line and the Python API, merged and checked.

* :mod:`.schema`: the settings, one frozen dataclass per section; each field's metadata says all about it.
* :mod:`.build`: :func:`load` reads pipeline.toml; :func:`from_mapping` builds the checked :class:`Config`;
  :func:`~.build.merge` is the precedence of the layers (defaults, file, environment, command line).
* :mod:`.values`: the parsed forms and checks of GPUs, mounts, caches, ports and env files.
* :mod:`.names`: the checks of names and versions (Docker references, PEP 440).
* :mod:`.requirements`: pip requirements, parsed once.
* :mod:`.identity`: the owner, the project id and the unique module name.
* :mod:`.text`, :mod:`.describe`: where a key sits in pipeline.toml; the effective settings as TOML.
* :mod:`.reference`: the configuration reference as Markdown, from the fields.
"""
from tg_pipeline.config.build import from_mapping, load
from tg_pipeline.config.describe import describe, shown_env
from tg_pipeline.config.identity import default_base_image, module_name, owner, project_id
from tg_pipeline.config.schema import (API_ORIGIN, BASE_IMAGE_ENV, COMMAND_LINE, CONFIG_NAME, SECTIONS, Config,
                                       DockerSettings, JobConfig, PackageSettings, RegistrySettings, RemoteSettings,
                                       RunSettings, SwarmSettings)

__all__ = ['load', 'from_mapping', 'describe', 'shown_env', 'default_base_image', 'module_name', 'owner', 'project_id',
           'API_ORIGIN', 'BASE_IMAGE_ENV', 'COMMAND_LINE', 'CONFIG_NAME', 'SECTIONS', 'Config', 'JobConfig',
           'PackageSettings', 'DockerSettings', 'RunSettings', 'RemoteSettings', 'SwarmSettings', 'RegistrySettings']
