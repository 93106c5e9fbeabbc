"""The effective configuration as TOML (``doit config``): every value with the place it came from, env
values shown with secret-looking names masked."""
from __future__ import annotations
import dataclasses
import os
import re
from typing import Any
from tg_pipeline.config.text import LineIndex  # noqa: F401 (part of this module's interface)
from tg_pipeline.config.text import toml_key, toml_literal, toml_string, toml_value


def secret_name(name: str) -> bool:
    """Names whose values are never printed."""
    return bool(re.search(r'TOKEN|PASSWORD|PASSWD|SECRET|KEY', name, re.IGNORECASE))


def shown_env(names, environ=None) -> dict[str, str]:
    """Env values as they may be printed: secret-looking names masked."""
    environ = os.environ if environ is None else environ
    return {n: ('***' if secret_name(n) else environ.get(n, '<unset>')) for n in names}


def _setting(key: str, value: Any, origin: str) -> str:
    try:
        text = toml_value(value)
    except TypeError:
        text, origin = toml_string(repr(value)), f'{origin}; not a TOML value, shown as its repr'
    return f'{toml_key(key)} = {text}  # {origin}'


def describe(config, jobs=None, environ=None, notes=None) -> str:
    """The effective configuration as TOML: each value with its origin, env values shown (secrets masked);
    ``notes`` (section -> comment lines) end their sections."""
    from tg_pipeline.config import schema as settings
    path = str(config.path)

    def origin(dotted: str) -> str:
        return config.origins.get(dotted, 'default').replace(path, config.path.name)

    lines = [f'# {config.path}', f'# project {config.project} (owner {config.owner})']
    for section in settings.SECTIONS:
        values = getattr(config, section)
        lines.append(f'[{section}]')
        lines += [_setting(f.name, getattr(values, f.name), origin(f'{section}.{f.name}'))
                  for f in dataclasses.fields(values)]
        if section == 'docker':
            lines.append(f'# base image used: {config.base_image}')
        lines += (notes or {}).get(section, [])
    for name in jobs or sorted(config.jobs):
        job = config.job(name)
        lines.append(f'[jobs.{toml_key(name)}]  # module {job.module}')
        for key in settings.JOB_KEYS:
            lines.append(_setting(key, getattr(job, key), origin(f'jobs.{name}.{key}')))
            if key == 'env':
                lines += [f'#   env.{toml_key(n)} = {toml_literal(v)}'
                          for n, v in shown_env(job.env, environ).items()]
    return '\n'.join(lines)
