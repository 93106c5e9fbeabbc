"""``doit diff``: what differs between two runs, section by section: code (a unified diff of the two sdists' files;
the payload as its class and attributes, never its bytes; the notebook cells), configuration (each changed key,
with both values and where each came from), dependencies (added, removed, changed versions), base image, host.
Each section says "the same" when it is; :func:`compare` also says whether anything differs."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from tg_pipeline.provenance import dependencies, payload as payloads, sources
from tg_pipeline.provenance.store import Store

HOST_KEYS = ('name', 'hostname', 'engine', 'os', 'kernel', 'arch', 'cpus', 'memory', 'gpus', 'gpus_given')


@dataclass
class Section:
    title: str
    lines: list = field(default_factory=list)  # what differs ([]: the same)
    same: str = 'the same'  # said when nothing differs


def unified(old: list[str], new: list[str], old_name: str, new_name: str) -> list[str]:
    return [line.rstrip('\n') for line in difflib.unified_diff(old, new, old_name, new_name, lineterm='')]


def _text_lines(data: bytes | None) -> list[str] | None:
    if data is None:
        return []
    try:
        return data.decode('utf-8').splitlines()
    except UnicodeDecodeError:
        return None


def file_diff(path: str, old: bytes | None, new: bytes | None) -> list[str]:
    """A unified diff of one file (None: absent on that side); binary files as one line."""
    old_lines, new_lines = _text_lines(old), _text_lines(new)
    old_name = f'a/{path}' if old is not None else '/dev/null'
    new_name = f'b/{path}' if new is not None else '/dev/null'
    if old_lines is None or new_lines is None:
        return [f'Binary files {old_name} and {new_name} differ']
    return unified(old_lines, new_lines, old_name, new_name)


def code_section(store: Store, a: dict, b: dict) -> Section:
    section = Section('code')
    code_a, code_b = a.get('code') or {}, b.get('code') or {}
    if code_a.get('sdist') == code_b.get('sdist'):
        section.same = f'the same (sdist {code_a.get("sdist", "")[:12]}, payload included)'
    else:
        files = [_sdist_files(store, code.get('sdist')) for code in (code_a, code_b)]
        if None in files:
            missing = [c.get('sdist') or '?' for c, f in zip((code_a, code_b), files) if f is None]
            section.lines.append('a kept sdist is missing from the store (removed by hand?): '
                                 + ', '.join(key[:12] for key in missing))
        else:
            section.lines += _files_diff(*files) + _payload_diff(files[0], files[1], code_a, code_b)
    cells = [_text_lines(store.read('cells', c.get('cells') or '') if c.get('cells') else b'')
             for c in (code_a, code_b)]
    if cells[0] != cells[1]:
        section.lines += unified(cells[0] or [], cells[1] or [], 'a/notebook cells', 'b/notebook cells')
    return section


def _sdist_files(store: Store, key: str | None):
    path = store.path('sdist', key) if key else None
    return sources.read_sdist(path) if path is not None and path.exists() else None


def _files_diff(a: sources.SdistFiles, b: sources.SdistFiles) -> list[str]:
    lines = []
    for path in sorted(set(a.code) | set(b.code)):
        if a.code.get(path) != b.code.get(path):
            lines += file_diff(path, a.code.get(path), b.code.get(path))
    made = sorted(p for p in set(a.generated) | set(b.generated) if a.generated.get(p) != b.generated.get(p))
    if made:
        lines.append(f'also differs, made by tg_pipeline from the settings and its own version: {", ".join(made)}')
    return lines


def _payload_diff(a: sources.SdistFiles, b: sources.SdistFiles, code_a: dict, code_b: dict) -> list[str]:
    lines = []
    for name in sorted(set(a.payload) | set(b.payload)):
        old, new = a.payload.get(name), b.payload.get(name)
        if old == new:
            continue
        shown = [payloads.describe(name, data) if data is not None else [] for data in (old, new)]
        if shown[0] != shown[1]:
            lines += unified(shown[0], shown[1], f'a/payload {name}', f'b/payload {name}')
        elif old is not None and new is not None and payloads.is_reference(old) and payloads.is_reference(new):
            continue  # the same factory and arguments, declared on another line of pipeline.toml: the same job
        else:
            lines.append(f'payload {name}: the same class and attributes as far as they show; its bytes differ by '
                         f'hash ({(code_a.get("payload") or {}).get(name, "?")[:12]} -> '
                         f'{(code_b.get("payload") or {}).get(name, "?")[:12]})')
    return lines


def flat_configuration(text: bytes | None) -> dict[str, tuple]:
    """dotted key -> (value, origin) of a kept configuration (``doit config``'s TOML, origins as comments)."""
    import tomlkit
    found = {}

    def walk(table, prefix):
        for key, item in table.items():
            dotted = f'{prefix}{key}'
            if isinstance(item, dict) and not _is_value_table(item):
                walk(item, dotted + '.')
            else:
                comment = getattr(getattr(item, 'trivia', None), 'comment', '') or ''
                found[dotted] = (_plain(item), comment.lstrip('#').strip())
    walk(tomlkit.parse((text or b'').decode()), '')
    return found


def _is_value_table(item) -> bool:
    import tomlkit.items
    return isinstance(item, tomlkit.items.InlineTable)


def _plain(item):
    return item.unwrap() if hasattr(item, 'unwrap') else item


def configuration_section(store: Store, a: dict, b: dict) -> Section:
    section = Section('configuration')
    if a.get('config') == b.get('config'):
        return section
    old, new = (flat_configuration(store.read('config', r.get('config') or '')) for r in (a, b))
    changed = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
               if (old.get(k) or (None,))[0] != (new.get(k) or (None,))[0]}
    mirrored = {}
    for key, (was, now) in changed.items():  # [run] memory_gb changed as jobs.X.memory_gb did: said once
        if key.startswith('jobs.'):
            for section_key in (f'{s}.{key.rpartition(".")[2]}' for s in ('run', 'package', 'docker')):
                if section_key in changed and _values(changed[section_key]) == _values((was, now)):
                    mirrored[section_key] = key
    for key, (was, now) in changed.items():
        if key in mirrored:
            continue
        mirrors = [k for k, v in mirrored.items() if v == key]
        also = f' (also {", ".join(mirrors)})' if mirrors else ''
        section.lines.append(f'{key}: {_setting(was)} -> {_setting(now)}{also}')
    return section


def _values(pair) -> tuple:
    return tuple((p or (None,))[0] for p in pair)


def _setting(entry) -> str:
    if entry is None:
        return '(not set)'
    value, origin = entry
    from tg_pipeline.config.text import toml_text
    try:
        text = toml_text(value)
    except TypeError:
        text = repr(value)
    return f'{text} ({origin or "?"})'


def _packages(kept: dict | None) -> dict[str, str]:
    found = {}
    for entry in (kept or {}).get('packages') or []:
        name, _, version = entry.partition('==')
        found[name.lower().replace('_', '-')] = entry
    return found


def dependencies_section(store: Store, a: dict, b: dict) -> Section:
    section = Section('dependencies')
    keys = [(r.get('dependencies') or {}).get('key', '') for r in (a, b)]
    if keys[0] == keys[1] and keys[0]:
        return section
    first, second = (dependencies.read(store, key) for key in keys)
    if first is None or second is None or first.get('packages') is None or second.get('packages') is None:
        section.lines.append('a dependency set was not recorded: ' + ', '.join(
            f'run {r["run_id"]}' for r, k in zip((a, b), (first, second)) if k is None or k.get('packages') is None))
        return section
    old, new = _packages(first), _packages(second)
    section.lines += [f'+ {new[n]}' for n in sorted(set(new) - set(old))]  # added, removed, then changed
    section.lines += [f'- {old[n]}' for n in sorted(set(old) - set(new))]
    section.lines += [f'~ {old[n]} -> {new[n].partition("==")[2]}' for n in sorted(set(old) & set(new))
                      if old[n] != new[n]]
    if first.get('python') != second.get('python'):
        section.lines.append(f'~ python {first.get("python")} -> {second.get("python")}')
    return section


def base_section(store: Store, a: dict, b: dict) -> Section:
    section = Section('base image')
    kept = [dependencies.read(store, (r.get('dependencies') or {}).get('key', '')) or {} for r in (a, b)]
    shown = [f'{k["base_image"]} (id {(k.get("base_id") or "-").split(":")[-1][:12]}'
             + (f', {k["base_digest"]})' if k.get('base_digest') else ')') if k.get('base_image') else
             'none (it ran in this Python)' for k in kept]
    if shown[0] != shown[1]:
        section.lines.append(f'{shown[0]} -> {shown[1]}')
    else:
        section.same = f'the same: {shown[0]}'
    return section


def host_section(a: dict, b: dict) -> Section:
    section = Section('host')
    hosts = [r.get('host') or {} for r in (a, b)]
    for key in HOST_KEYS:
        if hosts[0].get(key) != hosts[1].get(key):
            old, new = (_host_value(key, h.get(key)) for h in hosts)
            section.lines.append(f'{key}: {old} -> {new}')
    if a.get('where') != b.get('where'):
        section.lines.insert(0, f'where: {a.get("where")} -> {b.get("where")}')
    if not section.lines:
        section.same = f'the same: {hosts[0].get("name", "?")} ({hosts[0].get("hostname", "")})'
    return section


def _host_value(key: str, value) -> str:
    if key == 'gpus':
        return ', '.join(f'{g.get("name")} (driver {g.get("driver")})' for g in value or []) or 'none'
    return str(value) if value not in (None, '') else '-'


def compare(store: Store, a: dict, b: dict) -> tuple[bool, str]:
    """(whether the two runs ran the same thing, the text of ``doit diff``)."""
    sections = [code_section(store, a, b), configuration_section(store, a, b), dependencies_section(store, a, b),
                base_section(store, a, b), host_section(a, b)]
    lines = [f'# doit diff: run {a["run_id"]} (job {a.get("job")}, {a.get("where")}) -> run {b["run_id"]} '
             f'(job {b.get("job")}, {b.get("where")})']
    for section in sections:
        lines.append(f'## {section.title}: ' + ('differs' if section.lines else section.same))
        lines += section.lines
    return not any(s.lines for s in sections), '\n'.join(lines)
