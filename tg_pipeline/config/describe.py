"""The effective configuration as TOML (``doit config``), written with tomlkit: every value with the place it
came from as its comment, env values shown with secret-looking names masked."""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from tg_pipeline.config.text import toml_item, toml_key, toml_literal


def secret_name(name: str) -> bool:
    """Names whose values are never printed."""
    return bool(re.search(r'TOKEN|PASSWORD|PASSWD|SECRET|KEY', name, re.IGNORECASE))


def shown_env(names, environ=None) -> dict[str, str]:
    """Env values as they may be printed: secret-looking names masked."""
    environ = os.environ if environ is None else environ
    return {n: ('***' if secret_name(n) else environ.get(n, '<unset>')) for n in names}


def _setting(table, key: str, value: Any, origin: str) -> None:
    """``key = value  # origin`` into ``table``."""
    try:
        item = toml_item(value)
    except TypeError:
        item, origin = toml_item(repr(value)), f'{origin}; not a TOML value, shown as its repr'
    item.comment(origin)
    item.trivia.comment_ws = '  '
    table.add(key, item)


def describe(config, jobs=None, environ=None, notes=None) -> str:
    """The effective configuration as TOML: each value with its origin, env values shown (secrets masked);
    ``notes`` (section -> comment lines, without their ``#``) end their sections."""
    import tomlkit
    from tg_pipeline.config import schema
    path = str(config.path)

    def origin(dotted: str) -> str:
        return config.origins.get(dotted, 'default').replace(path, config.path.name)

    document = tomlkit.document()
    document.add(tomlkit.comment(str(config.path)))
    document.add(tomlkit.comment(f'project {config.project} (owner {config.owner})'))
    for section in schema.SECTIONS:
        values, table = getattr(config, section), tomlkit.table()
        for f in dataclasses.fields(values):
            _setting(table, f.name, getattr(values, f.name), origin(f'{section}.{f.name}'))
        if section == 'docker':
            table.add(tomlkit.comment(f'base image used: {config.base_image}'))
        for note in (notes or {}).get(section, []):
            table.add(tomlkit.comment(note.removeprefix('#').strip()))
        document.add(section, table)
    every = tomlkit.table(is_super_table=True)
    for name in jobs or sorted(config.jobs):
        job, table = config.job(name), tomlkit.table()
        table.comment(f'module {job.module}')
        table.trivia.comment_ws = '  '
        for key in schema.job_specs():
            _setting(table, key, job.value(key), origin(f'jobs.{name}.{key}'))
            if key == 'env':
                for variable, shown in shown_env(job.run.env, environ).items():
                    table.add(tomlkit.comment(f'  env.{toml_key(variable)} = {toml_literal(shown)}'))
        every.add(name, table)
    if every:
        document.add('jobs', every)
    return document.as_string().rstrip('\n')
