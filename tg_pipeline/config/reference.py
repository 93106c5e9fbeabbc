"""The configuration reference as Markdown, rendered from the settings' fields (:mod:`.schema`): one section per
table of pipeline.toml, each key with its type, default, command-line names and what it does. The docs include
it (a mkdocs hook calls :func:`markdown`), so the reference and ``doit help`` say the same, from one place."""
from __future__ import annotations

from tg_pipeline.config.build import TYPE_NAMES
from tg_pipeline.config.schema import (CONFIG_NAME, JOIN, MERGE, RUN_ONLY, SECTIONS, _Spec, _specs, aliases, inherited,
                                       job_help, job_specs)
from tg_pipeline.config.text import toml_text

HEADER = '| key | type | default | command line | what it does |\n|---|---|---|---|---|'


def markdown() -> str:
    """The reference of every table of pipeline.toml: [package], [docker], [run], [remote], [swarm], [registry],
    [jobs.NAME]."""
    short = {dotted: name for name, dotted in aliases().items()}
    parts = [f'Every setting of `{CONFIG_NAME}`, by table. On the command line (a doit variable) a setting is '
             f'`section.key=VALUE` or its short name, a job\'s own `jobs.NAME.key=VALUE`, one entry of a table '
             f'`section.key.NAME=VALUE`; the command line wins over the environment, which wins over the file. '
             f'`doit config` prints every value and where it came from; `doit help TASK` lists them too.']
    for name, cls in SECTIONS.items():
        rows = [_row(key, _type(spec), _default(spec), _names(f'{name}.{key}', spec, short.get(f'{name}.{key}')),
                     _does(spec)) for key, spec in _specs(cls).items()]
        parts.append(f'## [{name}]\n\n{_doc(cls)}\n\n{HEADER}\n' + '\n'.join(rows))
    parts.append(_jobs())
    return '\n\n'.join(parts) + '\n'


def _jobs() -> str:
    run_only = [key for key, spec in _specs(SECTIONS['run']).items() if spec.meta.get('combine') == RUN_ONLY]
    rows = []
    for key, spec in job_specs().items():
        start = inherited(key)
        default = f'`{start}`' if start else _default(spec)
        rows.append(_row(key, _type(spec), default, _names(f'jobs.NAME.{key}', spec), job_help(key)))
    intro = ('One table per job, `[jobs.NAME]`, NAME being the job\'s name (`job=NAME` on the command line). A key '
             'the job does not set comes from the setting its default names; a list it sets is joined after that '
             'setting\'s, a table added to it; a command-line [run] setting wins over the job\'s table. Every key of '
             '[run] is a key here too but ' + ', '.join(f'`{k}`' for k in run_only) + '.')
    return f'## [jobs.NAME]\n\n{intro}\n\n{HEADER}\n' + '\n'.join(rows)


def _doc(cls) -> str:
    return ' '.join((cls.__doc__ or '').split())


def _type(spec: _Spec) -> str:
    if spec.kind == 'choice':
        return ' or '.join(f'`"{c}"`' for c in spec.choices)
    return TYPE_NAMES.get(spec.kind, 'any value')


def _default(spec: _Spec) -> str:
    if 'default_text' in spec.meta:
        return spec.meta['default_text']
    return f'`{toml_text(spec.default)}`'


def _names(dotted: str, spec: _Spec, short: str | None = None) -> str:
    names = [f'`{short}=`'] if short else []
    names.append(f'`{dotted}=`')
    if spec.kind in ('table', 'strtable'):
        names.append(f'`{dotted}.NAME=`')
    return ', '.join(names)


def _does(spec: _Spec) -> str:
    text = spec.meta['help']
    if 'means' in spec.meta:
        text += f' ({spec.meta["means"]})'
    if 'minimum' in spec.meta:
        text += f'; at least {spec.meta["minimum"]}'
    if spec.meta.get('combine') == RUN_ONLY:
        text += '; [run] only: no key of a job\'s table'
    if 'env' in spec.meta:
        text += f'; the environment variable `{spec.meta["env"]}` sets it too'
    combine = spec.meta.get('combine')
    if combine in (JOIN, MERGE):
        text += '; a job\'s own are ' + ('joined after these' if combine == JOIN else 'added to these')
    return text


def _row(key: str, *cells: str) -> str:
    return '| ' + ' | '.join(c.replace('|', '\\|') for c in (f'`{key}`', *cells)) + ' |'


__all__ = ['markdown']
