"""`tg-pipeline` (or `python -m tg_pipeline`): set up a project that uses tg_pipeline.

    tg-pipeline init [FOLDER]   write dodo.py, pipeline.toml and jobs/ with a first job

Everything else is doit: `doit list`, `doit run_local job=HelloJob`, ...
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tg_pipeline.package import templates
from tg_pipeline.config.identity import default_base_image
from tg_pipeline.errors import PipelineError, report

INIT_FILES = {
    'dodo.py': 'init/dodo.py.j2',
    'pipeline.toml': 'init/pipeline.toml.j2',
    'jobs/__init__.py': None,
    'jobs/hello_job.py': 'init/hello_job.py.j2',
}


def init(folder: Path) -> list[Path]:
    """Write a minimal project into ``folder``; refuse (changing nothing) if any of its files exist."""
    folder = Path(folder)
    existing = [name for name in INIT_FILES if (folder / name).exists()]
    if existing:
        raise PipelineError(f'{folder.resolve()} already has {", ".join(existing)}: nothing was written',
                            hint='run init in an empty folder, or move those files away first')
    written = []
    for name, template in INIT_FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(templates.render(template, base_image=default_base_image()) if template else '')
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='tg-pipeline', description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    init_parser = commands.add_parser('init', help='write dodo.py, pipeline.toml and jobs/ into FOLDER')
    init_parser.add_argument('folder', nargs='?', default='.', type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == 'init':
            for path in init(args.folder):
                print(f'wrote {path}')
            go = '' if args.folder.resolve() == Path.cwd().resolve() else f'cd {shlex.quote(str(args.folder))} && '
            print(f'next: {go}doit run_local job=HelloJob')
    except PipelineError as e:
        report(e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
