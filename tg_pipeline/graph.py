"""`doit graph`: the task graph as DOT, and as PNG where graphviz's `dot` is installed."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def edges(steps: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """(from, to) task names: a file one task targets and another depends on, or a task_dep."""
    producers = {}
    for step, subtasks in steps.items():
        for task in subtasks:
            for target in task.get('targets', []):
                producers[target] = f'{step}:{task["name"]}'
    found = set()
    for step, subtasks in steps.items():
        for task in subtasks:
            name = f'{step}:{task["name"]}'
            for dep in task.get('file_dep', []):
                if dep in producers:
                    found.add((producers[dep], name))
            for dep in task.get('task_dep', []):
                found.add((dep, name))
    return sorted(found)


def to_dot(steps: dict[str, list[dict]]) -> str:
    lines = ['digraph tg_pipeline {', '  rankdir=LR;', '  node [shape=box, fontname="Helvetica"];']
    for step, subtasks in steps.items():
        for task in subtasks:
            lines.append(f'  "{step}:{task["name"]}" [tooltip="{task.get("doc", "")}"];')
    lines += [f'  "{a}" -> "{b}";' for a, b in edges(steps)]
    lines.append('}')
    return '\n'.join(lines) + '\n'


def write_graph(steps: dict[str, list[dict]], out: Path) -> list[Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_dot(steps))
    written = [out]
    if shutil.which('dot'):
        png = out.with_suffix('.png')
        subprocess.run(['dot', '-Tpng', str(out), '-o', str(png)], check=True)
        written.append(png)
    print('Task graph written to ' + ' and '.join(map(str, written)))
    if len(written) == 1:
        print('Install graphviz (apt-get install graphviz) to also get a PNG')
    return written
