"""How :func:`tg_pipeline.config.from_mapping` builds a Config: each value checked against its field.

A value's type hint is its check (see :mod:`tg_pipeline.config.schema`); the field's metadata adds
bounds. Each layer's value of a setting is collected with its source (default, a file and line, the
environment, the command line, the Python API); :func:`merge` is the precedence, the one place that
says which value a setting ends with and where it came from (``Config.origins``, and the source an
error names).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import shlex
import sys
import types
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Optional, cast

from tg_pipeline.config import values as config_run
from tg_pipeline.config.identity import module_name
from tg_pipeline.config.names import (component, component_problem, prefix_problem, proposed_job_name,
                                      proposed_prefix, proposed_reference, proposed_version, reference_problem,
                                      repository_problem, valid_job_name, version_problem)
from tg_pipeline.config.requirements import check_requirements
from tg_pipeline.config.schema import (API_ORIGIN, COMMAND_LINE, CONFIG_NAME, CONTROL_VARS, DEFAULT, JOIN, MOVED, OWN,
                                       REPLACE, RUN_ONLY, SECTIONS, Config, JobConfig, _Spec, _specs, aliases,
                                       env_settings, inherited, job_specs)
from tg_pipeline.config.text import LineIndex, toml_text
from tg_pipeline.errors import ConfigError, InvalidName

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TYPE_NAMES = {'str': 'string', 'int': 'integer', 'float': 'number', 'bool': 'boolean (true/false)',
              'strs': 'list of strings', 'array': 'array', 'table': 'table', 'strtable': 'table of strings'}


def _choices(choices: tuple) -> str:
    """The choices a person may give ('' stands for "not set", the default, and is not offered)."""
    shown = [f'"{c}"' for c in choices if c != '']
    return shown[0] if len(shown) == 1 else ', '.join(shown[:-1]) + ' or ' + shown[-1]


def _convert(spec: _Spec, value):
    """``value`` as the field stores it, or ``_convert`` itself when it does not fit the field."""
    kind, number = spec.kind, isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == 'any' or (kind == 'str' and isinstance(value, str)) or (kind == 'bool' and isinstance(value, bool)):
        return value
    if kind == 'str' and spec.meta.get('number_as_text') and number and isinstance(value, int):
        return str(value)  # gpus = 2
    if kind == 'int' and number and isinstance(value, int):
        return value
    if kind == 'float' and number and math.isfinite(value):
        return float(value)
    if kind == 'choice' and isinstance(value, str) and value in spec.choices:
        return value
    if kind in ('strs', 'array') and isinstance(value, (list, tuple)):
        if kind == 'array' or all(isinstance(v, str) for v in value):
            return tuple(copy.deepcopy(list(value)))
    if kind in ('table', 'strtable') and isinstance(value, Mapping):
        if kind == 'table' or all(isinstance(v, str) for v in value.values()):
            return types.MappingProxyType(copy.deepcopy({str(k): v for k, v in value.items()}))
    return _convert


class _Source(NamedTuple):
    """Where values come from: a label for origins (with a line when known) and for errors."""
    label: str
    lines: Optional[LineIndex] = None

    def line(self, table: str, key: str | None = None) -> int | None:
        return self.lines.of(table, key) if self.lines is not None else None

    def origin(self, table: str, key: str | None = None) -> str:
        line = self.line(table, key)
        return f'{self.label}:{line}' if line else self.label

    def error(self, problem: str, key: str, table: str = '', field: str | None = None,
              hint: str | None = None, cls=ConfigError, **extra) -> ConfigError:
        if self.label != COMMAND_LINE:
            return cls(problem, file=self.label, key=key, line=self.line(table, field), hint=hint, **extra)
        error = cls(f'{problem} (given on the command line)', key=key, hint=hint, **extra)
        error.file = COMMAND_LINE  # rendered without a file: "key 'memory': memory must be ..."
        return error


class _At(NamedTuple):
    """The source of one value and its place there."""
    source: _Source
    table: str
    field: Optional[str]

    def error(self, problem: str, key: str, hint: str | None = None, cls=ConfigError, **extra) -> ConfigError:
        return self.source.error(problem, key, self.table, self.field, hint, cls, **extra)

    def invalid(self, what: str, dotted: str, value: str, reason: str, proposal: str,
                hint: str | None = None) -> InvalidName:
        """An invalid name or version, with a TIP that sets a valid one where the bad one came from."""
        prefix, _, key = dotted.rpartition('.')
        if hint or not proposal:
            pass
        elif self.source.label == COMMAND_LINE:
            hint = f'e.g. {shlex.quote(f"{dotted}={proposal}")} on the command line'
        else:
            hint = f'e.g. {key} = {toml_text(proposal)} in [{prefix}]'
        return cast(InvalidName, self.error(f'{dotted} = {value!r} is not a valid {what}: {reason}', dotted, hint,
                                            InvalidName, setting=dotted, value=value, reason=reason,
                                            proposal=proposal))


_COMMAND_LINE = _At(_Source(COMMAND_LINE), '', None)
_DEFAULT = _At(_Source(DEFAULT), '', None)


# --- the layers and the precedence ----------------------------------------------------------------------
# where a value may come from, lowest first; the last two layers' values are a job's own, the others its section's
LAYERS = ('default', 'section', 'job', 'environment', 'section command line', 'job command line')
JOB_LAYERS = ('job', 'job command line')


class Given(NamedTuple):
    """One layer's value of one setting."""
    layer: str  # one of LAYERS
    value: Any
    at: _At
    entry: Optional[str] = None  # the value is this one entry of a table (swarm.labels.team=ml)


class Merged(NamedTuple):
    value: Any
    origin: str  # for Config.origins: 'default', '/x/pipeline.toml:7', '/x/pipeline.toml:13 + command line' ...
    at: _At  # what an error about the value names


def merge(spec: _Spec, given: Iterable[Given]) -> Merged | None:
    """The precedence of every setting: the value it ends with, from what each layer gives (see LAYERS).

    The field's ``combine`` (metadata, see :func:`tg_pipeline.config.schema.setting`) says how a job's own value
    meets the one it inherits: REPLACE (the default), the later layer wins (the job's table over [run], the
    command line's [run] over the job's table, a command-line jobs.NAME.KEY over all); OWN, the job's own value
    when it has one; JOIN, [run]'s list then the job's, without duplicates; MERGE, the job's entries added to
    [run]'s. In each layer a whole value replaces what came before and an entry (``run.caches.pip=/pip``) is
    added to it. None when no layer gives a value (a setting always has its default's).
    """
    combine = spec.meta.get('combine', REPLACE)
    given = contributing(spec, given)
    if combine in (REPLACE, RUN_ONLY):
        return _fold(given)
    section = _fold([g for g in given if g.layer not in JOB_LAYERS])
    own = _fold([g for g in given if g.layer in JOB_LAYERS])
    if own is None:
        return section
    if combine == OWN or section is None:
        return own
    value: tuple | Mapping
    if combine == JOIN:
        value = tuple(dict.fromkeys([*section.value, *own.value]))
    else:
        value = types.MappingProxyType({**section.value, **own.value})
    origins = [*(section.origin.split(' + ') if section.value else ()), *own.origin.split(' + ')]
    return Merged(value, ' + '.join(dict.fromkeys(origins)), own.at)


def contributing(spec: _Spec, given: Iterable[Given]) -> list[Given]:
    """The layers whose values a setting ends with, lowest first. A list joined from [run] and the job's table
    (JOIN: env, mounts, ports ...) given whole on the command line is that list: the command line replaces the
    lists of pipeline.toml (``mounts=/data:/data`` is the job's one mount, not one more)."""
    given = sorted(given, key=lambda g: LAYERS.index(g.layer))
    if spec.meta.get('combine') == JOIN and any(g.layer.endswith('command line') and g.entry is None for g in given):
        given = [g for g in given if g.layer not in ('section', 'job')]
    return given


def _fold(given: list[Given]) -> Merged | None:
    value, origins, at = None, [], None
    for g in given:
        origin = g.at.source.origin(g.at.table, g.at.field)
        if g.entry is None:
            value, origins, at = g.value, [origin], g.at
        else:
            value = types.MappingProxyType({**(value or {}), g.entry: g.value})
            origins, at = [o for o in origins if o != DEFAULT] + [origin], at or g.at
    return None if at is None else Merged(value, ' + '.join(dict.fromkeys(origins)), at)


# --- the builder ----------------------------------------------------------------------------------------
def build(data: Mapping, path: Path, root: Path | None, lines: LineIndex | None,
          overrides: Mapping[str, str] | None, environ: Mapping | None, origin: str) -> Config:
    """:func:`tg_pipeline.config.from_mapping`."""
    builder = _Builder(_Source(origin, lines), overrides or {}, os.environ if environ is None else environ)
    if not isinstance(data, Mapping):
        raise builder.source.error(f'the configuration must be a table, not {type(data).__name__}', '')
    for name, value in data.items():
        if name != 'jobs' and name not in SECTIONS:
            raise builder.source.error(f'unknown section [{name}]', name, name,
                                       hint='known sections: ' + ', '.join(sorted([*SECTIONS, 'jobs'])))
        if value is not None and not isinstance(value, Mapping):
            shape = 'tables like [jobs.MyJob]' if name == 'jobs' else f'a table [{name}]'
            raise builder.source.error(f'{name} must be {shape}', name, '', name)
    data = builder.moved(data)
    sections = {name: cls(**builder.section(name, data.get(name) or {})) for name, cls in SECTIONS.items()}
    jobs = builder.jobs(data.get('jobs') or {}, sections)
    return Config(path=path, root=Path(root) if root is not None else path.parent, jobs=types.MappingProxyType(jobs),
                  origins=types.MappingProxyType(builder.origins), **sections)


class _Override(NamedTuple):
    raw_key: str  # as typed: 'memory', 'jobs.Train.kwargs.lr'
    raw: str
    prefix: str  # 'run', 'jobs.Train'
    key: str  # 'memory_gb', 'kwargs'
    sub: Optional[str]  # 'lr'


def _unique(dotted: str, spec: _Spec, given: list[Given], merged: Merged) -> tuple:
    """A list whose items must differ in what the field's ``unique`` says (a mount's container path, a port's host
    address): the same item twice is kept once; two items for one place are one error naming both origins."""
    key_of, kept = spec.meta['unique'], []
    seen: dict[Any, tuple[Any, str, Any]] = {}  # key -> (the first item, its origin, its parsed form)
    for g in contributing(spec, given):
        if g.layer == 'default' or g.entry is not None or not g.value:
            continue
        origin = g.at.source.origin(g.at.table, g.at.field)
        for item in g.value:
            if item not in merged.value:
                continue
            found = key_of(item)
            if found is None:  # not of the form: the field's check says so
                kept.append(item)
                continue
            key, same = found
            if key in seen:
                first, first_origin, first_same = seen[key]
                if first_same == same:
                    continue
                origins = f'from {first_origin} and from {origin}' if first_origin != origin else \
                    'both on the command line' if origin == COMMAND_LINE else f'both at {origin}'
                raise merged.at.error(
                    f'{dotted}: {key} is given twice, as {first!r} and as {item!r} ({origins})', dotted,
                    hint=f'keep one of them: a list given on the command line replaces the one of pipeline.toml '
                         f'(e.g. {dotted.rpartition(".")[2]}={item})')
            seen[key] = (item, origin, same)
            kept.append(item)
    return tuple(kept)


def _parse_overrides(overrides: Mapping[str, str]) -> list[_Override]:
    parsed, short = [], aliases()
    for raw_key, raw in overrides.items():
        if raw_key in CONTROL_VARS:
            continue
        parts = short.get(raw_key, raw_key).split('.')
        head = 2 if parts[0] == 'jobs' else 1
        specs = job_specs() if head == 2 else _specs(SECTIONS[parts[0]]) if parts[0] in SECTIONS else {}
        key, sub = (parts + ['', ''])[head], parts[head + 1:]
        if key not in specs or (sub and (len(sub) > 1 or specs[key].kind not in ('table', 'strtable'))):
            error = ConfigError(
                f'unknown command-line setting {raw_key}={raw}', key=raw_key,
                hint='use section.key (e.g. run.memory_gb=0.5), jobs.NAME.key (e.g. jobs.Train.kwargs.lr=0.01) '
                     'or one of: ' + ', '.join(sorted(short)))
            error.file = COMMAND_LINE
            raise error
        parsed.append(_Override(raw_key, str(raw), '.'.join(parts[:head]), key, sub[0] if sub else None))
    return parsed


def _text_value(kind: str, raw: str):
    """A command-line value for a field of ``kind``: TOML when it is TOML (strings stay as typed)."""
    value = parse_override_value(raw)
    if kind in ('str', 'choice') and not isinstance(value, str):
        return raw
    if kind == 'bool' and raw.strip().lower() in ('1', '0', 'yes', 'no'):  # fail_fast=1, gpu_wait=0
        return raw.strip().lower() in ('1', 'yes')
    if kind == 'strs' and not isinstance(value, list):  # a,b or one number: ports=6006
        return [v for v in (value if isinstance(value, str) else raw).split(',') if v]
    return value


class _Builder:
    def __init__(self, source: _Source, overrides: Mapping[str, str], environ: Mapping):
        self.source, self.environ = source, environ
        self.overrides = _parse_overrides(overrides)
        self.given: dict[str, list[Given]] = {}  # dotted key -> each layer's value
        self.at: dict[str, _At] = {}
        self.origins: dict[str, str] = {}

    def add(self, dotted: str, given: Given) -> None:
        self.given.setdefault(dotted, []).append(given)
        if given.entry is not None:
            self.at[f'{dotted}.{given.entry}'] = given.at
            self.origins[f'{dotted}.{given.entry}'] = COMMAND_LINE

    def table(self, prefix: str, table: Mapping, specs: dict, what: str, layer: str) -> None:
        """The values ``table`` sets, checked and converted."""
        for key, value in table.items():
            if key not in specs:
                raise self.source.error(f'unknown key {key!r} in [{prefix}]', f'{prefix}.{key}', prefix, key,
                                        hint=f'known keys of {what}: ' + ', '.join(specs))
            if value is not None:
                at = _At(self.source, prefix, key)
                self.add(f'{prefix}.{key}', Given(layer, _checked(specs[key], value, f'{prefix}.{key}', at,
                                                                  f'{prefix}.{key}'), at))

    def command_line(self, prefix: str, specs: dict, layer: str) -> None:
        """The command line's settings for ``prefix`` ('run', 'jobs.Train')."""
        for o in (o for o in self.overrides if o.prefix == prefix):
            spec = specs[o.key]
            name = f'{prefix}.{o.key}' if spec.kind == 'choice' else o.raw_key  # choices: name the setting
            if o.sub is None:
                value = _checked(spec, _text_value(spec.kind, o.raw), name, _COMMAND_LINE, o.raw_key)
            else:
                item = _text_value('str' if spec.kind == 'strtable' else 'any', o.raw)
                value = _checked(spec, {o.sub: item}, name, _COMMAND_LINE, o.raw_key)[o.sub]
            self.add(f'{prefix}.{o.key}', Given(layer, value, _COMMAND_LINE, o.sub))

    def moved(self, data: Mapping) -> Mapping:
        """``data`` without the keys that moved to another table (schema.MOVED), whose values are given to the
        new key, from their old place (``[swarm] max_concurrent`` is ``[run] max_concurrent``; [run]'s own wins)."""
        found = dict(data)
        for old, new in MOVED.items():
            section, key = old.split('.')
            if isinstance(found.get(section), Mapping) and found[section].get(key) is not None:
                found[section] = {k: v for k, v in found[section].items() if k != key}
                at, spec = _At(self.source, section, key), _specs(SECTIONS[new.split('.')[0]])[new.split('.')[1]]
                self.add(new, Given('section', _checked(spec, data[section][key], old, at, old), at))
        return found

    def settle(self, dotted: str, spec: _Spec, given: list[Given]) -> Any:
        """The value ``dotted`` ends with (:func:`merge`), its origin and source noted."""
        merged = merge(spec, given)
        assert merged is not None, dotted  # its default layer is always given
        self.at[dotted], self.origins[dotted] = merged.at, merged.origin
        if spec.meta.get('unique') and merged.value:
            return _unique(dotted, spec, given, merged)
        return merged.value

    def section(self, name: str, table: Mapping) -> dict:
        specs = _specs(SECTIONS[name])
        for key, spec in specs.items():
            self.add(f'{name}.{key}', Given('default', spec.default, _DEFAULT))
        self.table(name, table, specs, f'[{name}]', 'section')
        for dotted, variable in env_settings().items():
            if dotted.startswith(name + '.') and self.environ.get(variable):
                at = _At(_Source(f'environment {variable}'), '', None)
                self.add(dotted, Given('environment', _checked(specs[dotted.split('.', 1)[1]], self.environ[variable],
                                                               dotted, at, dotted), at))
        self.command_line(name, specs, 'section command line')
        values = {key: self.settle(f'{name}.{key}', spec, self.given[f'{name}.{key}']) for key, spec in specs.items()}
        self.check(name, specs, values)
        return values

    def check(self, prefix: str, specs: dict, values: dict) -> None:
        """Bounds and requirements of the values set under ``prefix``."""
        for key, value in values.items():
            meta, dotted = specs[key].meta, f'{prefix}.{key}'
            at = self.at.get(dotted, _DEFAULT)
            if 'minimum' in meta and value < 0:
                raise at.error(f'{dotted} must be {meta["minimum"]} or positive, not {value}', dotted)
            if meta.get('memory') and value and value * 1024 < 6:
                raise at.error(f'{dotted} = {value} is below the 6 MiB Docker accepts', dotted,
                               hint='give the limit in gigabytes, e.g. 0.5')
            if meta.get('requirements'):
                try:
                    check_requirements(value, key=dotted)
                except ConfigError as e:
                    raise at.error(e.problem, dotted, e.hint) from None
            self.check_name(at, dotted, meta, value)
            if meta.get('check') and (found := meta['check'](value, dotted)):
                entry = self.at.get(f'{dotted}.{found[2]}', at) if len(found) > 2 else at  # a table's entry
                raise entry.error(found[0], dotted, hint=found[1])
            if meta.get('sweep'):
                for name, choices in value.items():
                    if not isinstance(choices, (list, tuple)) or not choices:
                        where = self.at.get(f'{dotted}.{name}') or _At(at.source, dotted, name)
                        raise where.error(f'{dotted}.{name} must be a non-empty array of values, not {choices!r}',
                                          f'{dotted}.{name}', hint=f'e.g. [{dotted}] then {name} = [0.1, 0.01]')
        if (found := config_run.check_together(values, prefix)) is not None:
            raise self.at.get(f'{prefix}.shm_gb', _DEFAULT).error(found[0], f'{prefix}.shm_gb', hint=found[1])

    @staticmethod
    def check_name(at: _At, dotted: str, meta: Mapping, value) -> None:
        """A version (PEP 440 and a Docker tag), an image prefix, an image name:tag (see config_names)."""
        if meta.get('version') and (problem := version_problem(value)):
            raise at.invalid('version', dotted, value, problem, proposed_version(value))
        if meta.get('image_prefix') and (problem := prefix_problem(value)):
            raise at.invalid('image prefix', dotted, value, problem, proposed_prefix(value))
        if meta.get('reference') and value and (problem := reference_problem(value)):
            raise at.invalid('image name:tag', dotted, value, problem, proposed_reference(value))

    def names(self, t: str, name: str, values: dict, docker) -> None:
        """The job's package is one part of a Docker image name, also after [docker] image_prefix."""
        package, given = values['package'].lower(), self.at[f'{t}.package']
        problem = component_problem(package)
        if problem and given is _DEFAULT:  # the job's name, lowercased
            raise self.source.error(
                f'job name {name!r} gives the image name {package!r}, which Docker refuses: {problem}', t, t,
                hint=f'set package = {toml_text(component(name))} in [{t}], or rename the job', cls=InvalidName,
                setting=t, value=name, reason=problem, proposal=component(name))
        if problem:
            raise given.invalid('image name', f'{t}.package', values['package'], problem, component(package))
        problem = repository_problem(docker.image_prefix + package)
        if problem:
            at = self.at.get('docker.image_prefix', _DEFAULT)
            raise at.invalid('image prefix', 'docker.image_prefix', docker.image_prefix,
                             f'with package {package!r}, {problem}', '',
                             hint=f'shorten image_prefix in [docker] or package in [{t}]')

    def jobs(self, table: Mapping, sections: dict) -> dict[str, JobConfig]:
        for o in self.overrides:
            if o.prefix.startswith('jobs.') and o.prefix[5:] not in table:
                known = ', '.join(sorted(table)) or '(none)'
                raise _COMMAND_LINE.error(f'unknown job {o.prefix[5:]!r} in {o.raw_key}={o.raw}', o.raw_key,
                                          hint=f'the jobs defined are: {known}')
        return {name: self.job(name, job, sections) for name, job in table.items()}

    def job(self, name: str, table, sections: dict) -> JobConfig:
        t, specs = f'jobs.{name}', job_specs()
        if not isinstance(table, Mapping):
            raise self.source.error(f'[{t}] must be a table', t, 'jobs', name)
        self.table(t, table, specs, 'a job', 'job')
        self.command_line(t, specs, 'job command line')
        values = {}
        for key, spec in specs.items():  # each from what the job inherits, then its own table and command line
            start = inherited(key)
            base = self.given[start] if start else [Given('default', name if key == 'package' else spec.default,
                                                          _DEFAULT)]
            values[key] = self.settle(f'{t}.{key}', spec, [*base, *self.given.get(f'{t}.{key}', [])])
        self.check_job(t, name, values)
        self.names(t, name, values, sections['docker'])
        self.check(t, specs, values)
        run = {key: values.pop(key) for key in list(values) if key in _specs(SECTIONS['run'])}
        package = values.pop('package').lower()
        return JobConfig(name=name, module=module_name(package, values['version']), package=package,
                         run=dataclasses.replace(sections['run'], **run), **values,
                         line=self.source.line(t), factory_line=self.source.line(t, 'factory'))

    def check_job(self, t: str, name: str, values: dict) -> None:
        """A factory (but from the Python API, which gives the job itself) and a name Docker and doit take."""
        factory = values['factory']
        if not factory and self.source.label != API_ORIGIN:
            raise self.source.error(f'[{t}] needs factory = "module.path:ClassOrFunction"', f'{t}.factory', t,
                                    hint='e.g. factory = "jobs.example_job:ExampleJob"')
        if factory and not re.fullmatch(r'[A-Za-z_][\w.]*:[A-Za-z_][\w.]*', factory):
            raise self.at[f'{t}.factory'].error(f'{t}.factory = {factory!r} is not "module.path:Name"',
                                               f'{t}.factory', hint='e.g. factory = "jobs.example_job:ExampleJob"')
        if not valid_job_name(name):
            raise self.source.error(f'job name {name!r} must be letters, digits, _ or - (ASCII, starting with a '
                                    f'letter or _)', t, t, hint=f'rename [{t}] to [jobs.{proposed_job_name(name)}]',
                                    cls=InvalidName, setting=t, value=name, reason='', proposal=proposed_job_name(name))



def _checked(spec: _Spec, value, name: str, at: _At, key: str):
    converted = _convert(spec, value)
    if converted is not _convert:
        return converted
    if spec.kind == 'choice':
        means = spec.meta.get('means')
        raise at.error(f'{name} must be {_choices(spec.choices)}, not {value!r}', key,
                       hint=f'choose {_choices(spec.choices)}' + (f' ({means})' if means else ''))
    kind = TYPE_NAMES[spec.kind]
    raise at.error(f'{name} must be {"an" if kind[0] in "aeiou" else "a"} {kind}, not {value!r}', key)


def parse_override_value(raw: str):
    """A command-line value is read as a TOML value when it is one, else as a string."""
    try:
        return tomllib.loads(f'v = {raw}')['v']
    except tomllib.TOMLDecodeError:
        return raw


def load(path: str | os.PathLike | None = None, overrides: Mapping[str, str] | None = None,
         environ: Mapping | None = None) -> Config:
    """Read and check pipeline.toml (with file, key and line in every error), then :func:`from_mapping`."""
    path = Path(path or CONFIG_NAME).resolve()
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ConfigError('file not found', file=str(path),
                          hint='run `tg-pipeline init` in your project folder to create one') from None
    except UnicodeDecodeError as e:
        raw = path.read_bytes()
        line = raw[:e.start].count(b'\n') + 1
        raise ConfigError(f'not UTF-8 text: byte {raw[e.start]:#04x} cannot be read (TOML files are UTF-8)',
                          file=str(path), line=line,
                          hint=f'save it as UTF-8, e.g.: iconv -f latin1 -t utf-8 {shlex.quote(str(path))} > '
                               f'pipeline.utf8.toml && mv pipeline.utf8.toml {shlex.quote(str(path))}') from None
    except OSError as e:
        raise ConfigError(f'cannot be read: {e.strerror or e}', file=str(path),
                          hint='check the path and its permissions (ls -l)') from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        found = re.search(r'line (\d+)', str(e))
        raise ConfigError(f'not valid TOML: {e}', file=str(path), line=int(found.group(1)) if found else None,
                          hint='fix the syntax at that line (strings need quotes, tables [like.this])') from None
    return from_mapping(data, path=path, lines=LineIndex(text), overrides=overrides, environ=environ,
                        origin=str(path))


def from_mapping(data: Mapping, *, path: Path, root: Path | None = None, lines: LineIndex | None = None,
                 overrides: Mapping[str, str] | None = None, environ: Mapping | None = None,
                 origin: str = API_ORIGIN) -> Config:
    """The checked configuration from ``data`` (parsed pipeline.toml, or the Python API's values).

    ``origin`` names where ``data`` came from, in errors and in ``Config.origins`` (with the line
    from ``lines`` when given). ``None`` values in ``data`` count as not given. Then the environment
    (``TG_PIPELINE_BASE_IMAGE``) and ``overrides`` (command-line ``name=value`` text) apply on top.
    """
    return build(data, Path(path), root, lines, overrides, environ, origin)
