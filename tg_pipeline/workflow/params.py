"""The command-line settings as doit task ``params``: what ``doit help TASK`` lists, and doit's own form of them.

Settings arrive as doit command-line variables, ``name=value`` (``memory=0.5``, ``run.cpu=2``,
``jobs.Train.kwargs.lr=0.01``, ``where=remote``; see :func:`tg_pipeline.config.schema.aliases` and
``CONTROLS``), read before the tasks are made. Every task declares the settings it takes as doit
``params``, so that ``doit help TASK`` lists them, each with what it does (the ``help`` of its field, see
:mod:`tg_pipeline.config.schema`: no help text lives here) and its value now. doit also
accepts a declared param in its own form after the task's name (``doit run_local --memory=0.5``):
:func:`command_line` reads those from the command line together with the variables, so both forms make
the same configuration, and the value doit parses for the task is the same one.
"""
from __future__ import annotations

import functools
from typing import Callable, Mapping

from tg_pipeline.config.schema import COMMAND_LINE, CONTROLS, SECTIONS, _specs, aliases, job_help, job_specs
from tg_pipeline.config.text import toml_text
from tg_pipeline.errors import ConfigError

STEP_CONTROLS = {
    'run_local': ('job', 'detach'), 'run_remote': ('job', 'detach'), 'run_swarm': ('job', 'detach'),
    'status': ('job', 'where', 'run_id', 'all_projects'), 'logs': ('job', 'where', 'run_id', 'follow'),
    'stop': ('job', 'where', 'run_id'), 'result': ('job', 'where', 'run_id'),
    'cleanup': ('where', 'days', 'keep'), 'graph': ('job', 'all', 'files'), 'check_remote': (), 'gpus': ('where',),
}
STEP_CONTROLS.update({step: (*STEP_CONTROLS[step], 'variant') for step in ('status', 'logs', 'stop', 'result')})
STEP_CONTROLS.update({'exec': ('job', 'where', 'run_id', 'cmd'),
                      'forward': ('job', 'where', 'run_id', 'port', 'local_port'),
                      'cleanup': (*STEP_CONTROLS['cleanup'], 'caches')})
STEP_CONTROLS.update({'show': ('run_id',), 'runs': ('job', 'where'), 'diff': ('run_a', 'run_b'),
                      'rerun': ('run_id', 'where', 'detach'), 'export': ('run_id', 'dest')})  # what ran
STEP_HELP = {('show', 'run_id'): 'the run (its id, or the start of it; doit runs lists them)',
             ('export', 'run_id'): 'the run (its id, or the start of it; doit runs lists them)',
             ('rerun', 'run_id'): 'the run to repeat (its id, or the start of it; doit runs lists them)',
             ('rerun', 'where'): 'where it runs again: local, remote or swarm (default: where it ran)',
             ('runs', 'where'): 'only the runs of local, remote, swarm or attached (default: all)',
             ('runs', 'job'): 'only the runs of this job (default: every job)'}
METAVARS = {'float': 'N', 'int': 'N', 'bool': 'true|false', 'strs': 'A,B', 'array': '[...]', 'table': '{...}',
            'strtable': '{...}', 'str': 'TEXT', 'any': 'VALUE'}


def metavar_of(spec) -> str:
    """What a value of this setting looks like: its choices, or its kind."""
    return '|'.join(c for c in spec.choices if c) if spec.kind == 'choice' else METAVARS[spec.kind]


def is_setting(name: str) -> bool:
    """A name that may be given on the command line (as ``name=value`` or as ``--name=value``)."""
    return name in CONTROLS or name in aliases() or name.split('.')[0] in (*SECTIONS, 'jobs')


def command_line(variables: Mapping[str, str], argv: list[str]) -> dict[str, str]:
    """The ``name=value`` variables, and the settings given doit's way (``--memory=0.5``, ``--memory 0.5``,
    ``--detach``) in ``argv``; the same setting given twice, differently, is an error."""
    found, index = dict(variables), 0
    while index < len(argv):
        name, equals, value = argv[index][2:].partition('=')
        used = [index]
        if argv[index].startswith('--') and is_setting(name):
            if not equals and CONTROLS.get(name, ('', False))[1]:
                value = '1'
            elif not equals:
                following = argv[index + 1] if index + 1 < len(argv) else '-'
                if following.startswith('-'):
                    index += 1
                    continue  # doit says what is missing
                value, index = following, index + 1
                used.append(index)
            if name in found and found[name] != value:
                raise _twice(name, found[name], value, [a for i, a in enumerate(argv) if i not in used])
            found[name] = value
        index += 1
    return found


def _twice(name: str, first: str, second: str, rest: list[str]) -> ConfigError:
    import shlex
    once = [a for a in rest if a != f'{name}={first}'] + [f'{name}={second}']
    error = ConfigError(f'{name} is given twice: {name}={first} and --{name}={second}', key=name,
                        hint=f'give it once: doit {shlex.join(once)}')
    error.file = COMMAND_LINE
    return error


_SHOWN: dict[tuple[type, str], str] = {}  # (type, repr) -> shown: every job of a command repeats most values


def _shown(value) -> str:
    key = (type(value), repr(value))
    if key not in _SHOWN:
        try:
            text = toml_text(value)
        except TypeError:
            text = repr(value)
        _SHOWN[key] = text if len(text) <= 40 else text[:37] + '...'
    return _SHOWN[key]


def _param(name: str, help_text: str, metavar: str = 'VALUE', flag: bool = False) -> dict:
    param = {'name': name, 'long': name, 'type': bool if flag else str, 'default': False if flag else '',
             'help': help_text.replace('%', '%%')}  # doit formats the help with %(default)s
    if not flag:
        param['metavar'] = metavar
    return param


def _now(config, dotted: str, value: Callable[[], object], detail: bool) -> str:
    """'; now VALUE (where it was set)' for ``doit help``; '' where no help is shown (it writes TOML text)."""
    if not detail:
        return ''
    origin = config.origins.get(dotted, 'default').replace(str(config.path), config.path.name)
    return f'; now {_shown(value())} ({origin})'


def _setting(config, dotted: str, name: str | None = None, detail: bool = True) -> dict:
    section, key = dotted.split('.', 1)
    spec = _specs(SECTIONS[section])[key]
    metavar = (spec.meta.get('unit') if name else None) or metavar_of(spec)
    entry = f' (one entry: {dotted}.NAME=VALUE)' if spec.kind in ('table', 'strtable') else ''
    same = f' (as {dotted})' if name else ''
    variable = f'; env {spec.meta["env"]}' if 'env' in spec.meta else ''
    now = _now(config, dotted, lambda: getattr(getattr(config, section), key), detail)
    return _param(name or dotted, f'{spec.meta["help"]}{variable}{entry}{same}{now}', metavar)


def _job_settings(config, job: str | None, detail: bool) -> list[dict]:
    specs = job_specs()
    if job is None:
        return [_param('jobs.NAME.KEY', 'a job\'s own setting, given as jobs.NAME.KEY=VALUE, e.g. '
                                        'jobs.Train.kwargs.lr=0.01 (doit help STEP:NAME lists them); KEY: '
                                        + ', '.join(specs))]
    found = []
    for key, spec in specs.items():
        dotted = f'jobs.{job}.{key}'
        entry = f' (one entry: {dotted}.NAME=VALUE)' if spec.kind in ('table', 'strtable') else ''
        now = _now(config, dotted, functools.partial(config.job(job).value, key), detail)
        found.append(_param(dotted, f'{job_help(key)}{entry}{now}', metavar_of(spec)))
    return found


def section_settings(config, detail: bool = True) -> list[dict]:
    """The settings of pipeline.toml's sections as params: the short names first, then ``section.key``.
    ``detail``: each one's value now and where it was set, in its help (a command that runs a step shows no help:
    it leaves that out)."""
    short = [_setting(config, dotted, name, detail) for name, dotted in aliases().items()]
    every = [_setting(config, f'{section}.{key}', detail=detail) for section, cls in SECTIONS.items()
             for key in _specs(cls)]
    return short + every


def settings(config, job: str | None, sections: list[dict] | None = None, detail: bool = True) -> list[dict]:
    """Every setting of pipeline.toml as params: the short names first, then ``section.key``, then the job's.
    ``sections``: what :func:`section_settings` gave for this config (the same for every job), else made here;
    ``detail``: as there."""
    return (section_settings(config, detail) if sections is None else sections) + _job_settings(config, job, detail)


def for_task(step: str, settings_params: list[dict], jobs: list[str]) -> list[dict]:
    """The params of ``step``: its own controls (``job=``, ``where=`` ...), then every setting."""
    controls = []
    for name in STEP_CONTROLS.get(step, ('job',)):
        help_text, flag = CONTROLS[name]
        help_text = STEP_HELP.get((step, name), help_text)
        if name == 'job' and step != 'runs':
            help_text = f'{help_text}: {", ".join(jobs)}'
        controls.append(_param(name, help_text, 'NAME' if name == 'job' else 'VALUE', flag))
    return controls + settings_params


def command_words(argv: list[str]) -> list[str]:
    """A doit command line's words: its command and task names, without options and ``name=value`` variables."""
    return [a for a in argv if not a.startswith('-') and '=' not in a]


def run_steps(argv: list[str], steps) -> list[str]:
    """The steps (of ``steps``) a doit command line runs: ``doit run_remote job=X``, ``doit run run_remote:X``;
    [] for one that merely names them (``doit help run_remote``, ``doit info ...``) and for plain ``doit``."""
    words = command_words(argv)
    if words[:1] == ['run']:
        words = words[1:]
    if not words or words[0].split(':')[0] not in steps:
        return []
    return [w.split(':')[0] for w in words]


__all__ = ['command_line', 'command_words', 'section_settings', 'settings', 'for_task', 'is_setting', 'run_steps']

