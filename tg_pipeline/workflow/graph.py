"""`doit graph`: the delivery steps of the chosen jobs as DOT (and PNG where graphviz's `dot` is installed),
each step marked with what doit would do now.

What is up to date is doit's own answer, as ``doit info`` gives it: the graph task's ``uptodate`` holds a
:class:`Probe`, to which doit hands its dependency manager and every task (as to any
``UptodateCalculator``), and the graph asks it ``get_status`` of each step. A step is *up to date*; *runs
now* (its own check fails: an input changed, a target is missing, its settings changed ...); *runs if a
step before it changes its files* (it is up to date, but a step it depends on runs now); or *runs
whenever asked* (the run steps, which have no files to check). ``job=X`` draws one job; ``all=1`` adds
the lifecycle steps (status, logs, stop, result); ``files=1`` adds the files each step reads and writes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from doit.dependency import UptodateCalculator

from tg_pipeline.errors import PipelineError
from tg_pipeline.package import manifest

# steps that act on runs rather than build or start them: drawn only with all=1
LIFECYCLE = ('status', 'logs', 'stop', 'result', 'exec', 'forward')
STATES = {  # state -> (fill colour, what it means)
    'up-to-date': ('#c8e6c9', 'up to date'),
    'run': ('#ffcc80', 'runs now'),
    'after': ('#fff59d', 'runs if a step before it changes its files'),
    'always': ('#bbdefb', 'runs whenever asked'),
    'unknown': ('#e0e0e0', 'cannot tell'),
}
REASONS = (  # doit's reason -> ours (the first that applies is shown)
    ('missing_target', 'a target is missing'),
    ('missing_file_dep', 'an input file is missing'),
    ('changed_file_dep', 'an input file changed'),
    ('removed_file_dep', 'an input file was removed'),
    ('add_file_dep', 'it has a new input file'),
    ('checker_changed', 'the file checker changed'),
    ('uptodate_false', 'its settings or its image/registry check changed'),
    ('has_no_dependencies', 'it has nothing to check'),
)


class Probe(UptodateCalculator):
    """The graph task's ``uptodate``: always False (the graph is drawn every time); keeps what doit gives."""

    def __init__(self):
        super().__init__()
        self.dep_manager = None

    def setup(self, dep_manager, tasks_dict):
        super().setup(dep_manager, tasks_dict)
        self.dep_manager = dep_manager

    def __call__(self) -> bool:
        return False

    def status(self, name: str) -> tuple[str, str]:
        """(state, reason) of task ``name`` by doit's up-to-date logic."""
        if self.dep_manager is None or name not in (self.tasks_dict or {}):
            return 'unknown', 'doit did not check the graph task (doit graph --always-execute?)'
        try:
            status = self.dep_manager.get_status(self.tasks_dict[name], self.tasks_dict, get_log=True)
        except Exception as e:  # noqa: BLE001 - an engine or registry that does not answer: say so, draw on
            return 'unknown', f'{type(e).__name__}: {e}'.splitlines()[0]
        if status.status == 'up-to-date':
            return 'up-to-date', ''
        reason = next((text for key, text in REASONS if status.reasons.get(key)), status.status)
        return 'run', reason


def chosen(steps: dict[str, list[dict]], everything: bool = False) -> dict[str, list[dict]]:
    """The steps drawn: the delivery steps of the chosen jobs; the lifecycle ones too with ``everything``."""
    return {step: tasks for step, tasks in steps.items() if everything or step not in LIFECYCLE}


def edges(steps: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """(from, to) task names: a file one task targets and another depends on, or a task_dep."""
    producers = {}
    for step, subtasks in steps.items():
        for task in subtasks:
            for target in task.get('targets', []):
                producers[target] = f'{step}:{task["name"]}'
    names = {f'{step}:{task["name"]}' for step, subtasks in steps.items() for task in subtasks}
    found = set()
    for step, subtasks in steps.items():
        for task in subtasks:
            name = f'{step}:{task["name"]}'
            for dep in task.get('file_dep', []):
                if dep in producers:
                    found.add((producers[dep], name))
            for dep in task.get('task_dep', []):
                if dep in names:
                    found.add((dep, name))
    return sorted(found)


def states(steps: dict[str, list[dict]], probe) -> dict[str, tuple[str, str]]:
    """name -> (state, reason) of every drawn task; 'after' spreads from what runs now along the edges."""
    found = {}
    for step, subtasks in steps.items():
        for task in subtasks:
            name = f'{step}:{task["name"]}'
            checked = task.get('file_dep') or task.get('targets')
            found[name] = probe.status(name) if checked else ('always', '')
    links = edges(steps)
    changed = True
    while changed:
        changed = False
        for before, after in links:
            if found[before][0] in ('run', 'after') and found[after][0] == 'up-to-date':
                found[after] = ('after', f'after {before}')
                changed = True
    return found


def _quote(text: str) -> str:
    return '"' + str(text).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


def _file_id(path: str, root: Path | None) -> str:
    if root is not None:
        try:
            return os.path.relpath(path, root) if Path(path).is_relative_to(root) else path
        except (TypeError, ValueError):
            return path
    return path


def to_dot(steps: dict[str, list[dict]], found: dict[str, tuple[str, str]] | None = None, files: bool = False,
           root: Path | None = None) -> str:
    """DOT of the drawn tasks (filled by their state when ``found``), their edges, and their files."""
    lines = ['digraph tg_pipeline {', '  rankdir=LR;',
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica"];']
    file_edges = set()
    for step, subtasks in steps.items():
        for task in subtasks:
            name = f'{step}:{task["name"]}'
            state, reason = (found or {}).get(name, ('unknown', ''))
            colour, meaning = STATES[state]
            label = f'{name}\n{meaning}' + (f': {reason}' if reason and state == 'run' else '')
            lines.append(f'  {_quote(name)} [label={_quote(label)}, fillcolor="{colour}", '
                         f'tooltip={_quote(task.get("doc", ""))}];')
            if files:
                file_edges |= {(_file_id(f, root), name) for dep in task.get('file_dep', [])
                               for f in manifest.listed(dep)}
                file_edges |= {(name, _file_id(f, root)) for f in task.get('targets', [])}
    lines += [f'  {_quote(a)} -> {_quote(b)};' for a, b in edges(steps)]
    if files:
        task_names = {f'{step}:{task["name"]}' for step, subtasks in steps.items() for task in subtasks}
        for path in sorted({end for edge in file_edges for end in edge} - task_names):
            lines.append(f'  {_quote(path)} [shape=note, style=filled, fillcolor=white, fontsize=10];')
        lines += [f'  {_quote(a)} -> {_quote(b)} [style=dashed, color=gray40];' for a, b in sorted(file_edges)]
    if found is not None:
        lines.append('  subgraph cluster_legend { label="now"; fontname="Helvetica";')
        lines += [f'    {_quote("legend: " + meaning)} [label={_quote(meaning)}, fillcolor="{colour}"];'
                  for colour, meaning in STATES.values()]
        lines.append('  }')
    lines.append('}')
    return '\n'.join(lines) + '\n'


def summary(found: dict[str, tuple[str, str]]) -> list[str]:
    """One line per step: what doit would do with it now."""
    width = max([len(name) for name in found] + [4])
    return [f'{name.ljust(width)}  {STATES[state][1]}' + (f' ({reason})' if reason else '')
            for name, (state, reason) in found.items()]


def write_graph(steps: dict[str, list[dict]], out: Path, probe=None, *, everything: bool = False,
                files: bool = False, root: Path | None = None) -> list[Path]:
    """Write ``out`` (DOT) and, where graphviz is installed, the PNG beside it; print what would run now."""
    drawn = chosen(steps, everything)
    found = states(drawn, probe) if probe is not None else None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_dot(drawn, found, files, root))
    written = [out]
    if shutil.which('dot'):
        png = out.with_suffix('.png')
        drawn_png = subprocess.run(['dot', '-Tpng', str(out), '-o', str(png)], capture_output=True, text=True)
        if drawn_png.returncode != 0:
            raise PipelineError(f'graphviz could not draw {out}: {drawn_png.stderr.strip()}',
                                hint=f'the DOT file is there; try: dot -Tsvg {out} -o {out.with_suffix(".svg")}')
        written.append(png)
    if found:
        print('\n'.join(summary(found)))
    print('Task graph written to ' + ' and '.join(map(str, written)))
    if len(written) == 1:
        print('Install graphviz (apt-get install graphviz) to also get a PNG')
    return written
