"""What ran, as people read it: ``doit show`` (one run, every part of its record) and ``doit runs`` (one line per
run)."""
from __future__ import annotations

import datetime
import os
import textwrap
from pathlib import Path

from tg_pipeline.console.units import format_bytes, format_duration
from tg_pipeline.provenance import dependencies, record as records
from tg_pipeline.provenance.store import Store

RUNS_COLUMNS = ('RUN ID', 'JOB', 'WHERE', 'CODE', 'GIT', 'EXIT', 'DURATION', 'RESULT')


def short(digest: str | None, length: int = 12) -> str:
    return (digest or '').split(':')[-1][:length] or '-'


def _instant(text):
    """A time of a record: ISO with its offset (ours), or Docker's (UTC, nanoseconds, 'Z'); None for none (or
    Docker's zero time)."""
    text = str(text or '')
    if not text or text.startswith('0001-'):
        return None
    if text.endswith('Z'):  # Docker's
        head, _, fraction = text[:-1].partition('.')
        text = head + ('.' + fraction[:6] if fraction else '') + '+00:00'
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.astimezone()


def times(record: dict, ended: dict) -> tuple:
    """(start, end) of a run: the host's own times when its kept record has them, else ours."""
    start = _instant(ended.get('started_at')) or _instant(record.get('started'))
    end = _instant(ended.get('finished')) or _instant(ended.get('at'))
    return start, end


def exit_text(ended: dict) -> str:
    if ended.get('variants'):
        ok = sum(1 for v in ended['variants'] if v.get('ok'))
        return f'{ok}/{len(ended["variants"])}'
    code = ended.get('exit_code')
    text = '-' if code is None and not ended else ('?' if code is None else str(code))
    return text + (' OOM' if ended.get('oom_killed') else '') + (' timeout' if ended.get('timed_out') else '')


def duration_text(record: dict, ended: dict) -> str:
    start, end = times(record, ended)
    return format_duration((end - start).total_seconds()) if start and end and end >= start else '-'


def git_text(git: dict | None, length: int = 8) -> str:
    if not git:
        return '-'
    return (git.get('commit') or 'no-commit')[:length] + ('*' if git.get('dirty') else '')


def runs_table(rows: list[tuple[dict, dict, str]]) -> str:
    """``doit runs``: (record, ending, result summary) of each run, one line each, under a header."""
    lines = [RUNS_COLUMNS]
    for record, ended, summary in rows:
        lines.append((record['run_id'], record.get('job', ''), record.get('where', ''),
                      short((record.get('code') or {}).get('sdist')), git_text(record.get('git')), exit_text(ended),
                      duration_text(record, ended), summary))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(RUNS_COLUMNS) - 1)]
    return '\n'.join('  '.join(str(v).ljust(w) for v, w in zip(line, widths)) + '  ' + str(line[-1])
                     for line in lines).rstrip()


def _relative(path: Path) -> str:
    text = os.path.relpath(path)
    return str(path) if text.startswith('..') else text


def _host_text(host: dict) -> str:
    if host.get('error'):
        return f'{host.get("name", "?")}: not known ({host["error"]})'
    parts = [f'Docker {host["engine"]}' if host.get('engine') else '', host.get('os', ''),
             f'kernel {host["kernel"]}' if host.get('kernel') else '', host.get('arch', ''),
             f'{host["cpus"]} CPUs' if host.get('cpus') else '',
             f'{format_bytes(host["memory"])} memory' if host.get('memory') else '']
    text = f'{host.get("name", "?")} ({host.get("hostname", "")}): ' + ', '.join(p for p in parts if p)
    return text


def gpus_text(host: dict) -> str:
    gpus = host.get('gpus') or []
    found = '; '.join(f'{g["index"]}: {g["name"]} (driver {g["driver"]}{", " + g["memory"] if g.get("memory") else ""})'
                      for g in gpus) or 'none found (no nvidia-smi answered there)'
    return f'{found}; given to the run: {host.get("gpus_given") or "none"}'


def _code_lines(record: dict, store: Store) -> list[str]:
    code = record.get('code') or {}
    sdist = code.get('sdist')
    lines = [f'code      sdist {short(sdist)} ({format_bytes(store.size("sdist", sdist or ""))}), kept in '
             f'{_relative(store.path("sdist", sdist)) if sdist else "-"}']
    lines += [f'          payload {name} sha256 {short(digest)}'
              for name, digest in (code.get('payload') or {}).items()]
    if code.get('cells'):
        lines.append(f'          notebook cells that defined the job: {_relative(store.path("cells", code["cells"]))}')
    git = record.get('git')
    if not git:
        lines.append('git       not a git work tree')
    else:
        state = 'dirty' if git.get('dirty') else 'clean'
        lines.append(f'git       {git.get("commit") or "(no commit yet)"} on {git.get("branch") or "(detached HEAD)"}, '
                     f'{state} under the source roots' + (f' ({len(git.get("changed") or [])} file(s) changed: '
                                                         f'{", ".join(git.get("changed") or [])})' if git.get('dirty')
                                                         else ''))
        if git.get('patch'):
            lines.append(f'          uncommitted changes as a patch: {_relative(store.path("patch", git["patch"]))}')
    return lines


def _image_lines(record: dict, store: Store) -> tuple[list[str], dict | None]:
    kept = dependencies.read(store, (record.get('dependencies') or {}).get('key', ''))
    image = record.get('image') or {}
    deps_id = (record.get('dependencies') or {}).get('image_id', '')
    lines = []
    if image:
        lines.append(f'image     {short(image.get("id"))} ({image.get("reference", "")}) on dependency image '
                     f'{short(deps_id)}')
    if kept and kept.get('base_image'):
        lines.append(f'base      {kept["base_image"]} (id {short(kept.get("base_id"))}'
                     + (f', {kept["base_digest"]}' if kept.get('base_digest') else ', no registry digest') + ')')
    python = kept.get('python') if kept else None
    here = record.get('python', '?')
    lines.append(f'python    {python} in the image; tg_pipeline {record.get("tg_pipeline", "?")} (Python {here} here)'
                 if python and image else f'python    {here}; tg_pipeline {record.get("tg_pipeline", "?")}')
    return lines, kept


def show(path: Path, record: dict, store: Store, summary: str = '') -> str:
    """``doit show``: every part of a run's record, readable; the dependency set and the configuration last."""
    ended = records.ending(path, record)
    who = record.get('identity') or {}
    start, _ = times(record, ended)
    outcome = summary if ended.get('variants') else f'exit {exit_text(ended)}' + (f': {summary}' if summary else '')
    lines = [f'run       {record["run_id"]} of job {record.get("job")} ({record.get("where")})',
             f'ended     after {duration_text(record, ended)}, {outcome}' if ended else
             f'ended     not known yet: running, or not collected (doit result job={record.get("job")} '
             f'where={record.get("where")} run_id={record["run_id"]} collects it)',
             f'started   {start.astimezone().strftime("%Y-%m-%d %H:%M:%S") if start else "?"} by {who.get("owner")} '
             f'(project {who.get("project")})',
             f'command   {record.get("command", "?")}']
    if record.get('repeats'):
        lines.append(f'repeats   run {record["repeats"]} (its code and payload, from what was kept)')
    lines += _code_lines(record, store)
    image_lines, kept = _image_lines(record, store)
    lines += image_lines
    host = record.get('host') or {}
    lines += [f'host      {_host_text(host)}', f'gpus      {gpus_text(host)}']
    for node in host.get('nodes') or []:
        lines.append(f'          node {node.get("hostname")} ({node.get("role")}): Docker {node.get("engine")}, '
                     f'{node.get("cpus")} CPUs, {format_bytes(node.get("memory") or 0)} memory')
    costs = records.kept_bytes(store, record)
    lines.append(f'kept      record {format_bytes(path.stat().st_size)}; in the store (shared with every run of the '
                 f'same content): ' + ', '.join(f'{k} {format_bytes(v)}' for k, v in costs.items()))
    lines += _dependency_lines(kept)
    config = store.read('config', record.get('config') or '')
    lines += ['', '# configuration (as doit config printed it for this run)',
              config.decode().rstrip() if config else '# not kept']
    return '\n'.join(lines)


def _dependency_lines(kept: dict | None) -> list[str]:
    if kept is None:
        return ['', '# dependencies: not recorded']
    packages = kept.get('packages')
    if packages is None:
        return ['', f'# dependencies: could not be read ({kept.get("error", "?")})']
    where = 'this Python' if kept.get('engine') == 'this Python' else 'the dependency image'
    wrapped = textwrap.wrap(', '.join(packages), 110) or ['(none)']
    return ['', f'# dependencies: {len(packages)} distributions in {where}'] + wrapped
