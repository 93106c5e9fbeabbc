"""The one doit set-up: :func:`dodo_tasks` gives a dodo.py its DOIT_CONFIG and task creators (a bad
pipeline.toml stops here with one ERROR/TIP paragraph); the Python API runs the same tasks."""
from __future__ import annotations
import os
import sys
from pathlib import Path
from tg_pipeline.workflow import params
from tg_pipeline.workflow.context import Context
from tg_pipeline.compat.doit import command_line_vars
from tg_pipeline.workflow.reporter import console_reporter
from tg_pipeline.errors import PipelineError, report
from tg_pipeline.workflow.tasks import STEPS, doit_functions


def doit_config(build_dir: Path, **extra) -> dict:
    """DOIT_CONFIG: doit's state in a file any number of doit processes share (see tg_pipeline.workflow.locks)."""
    from tg_pipeline.workflow import locks
    return {**locks.doit_config(build_dir), **extra}


def runs_remote(argv: list[str]) -> bool:
    """Whether this doit command runs run_remote (``doit run_remote ...``, ``doit run run_remote:X``), not merely
    names it (``doit help run_remote``, ``doit info ...``)."""
    return 'run_remote' in params.run_steps(argv, STEPS)


def image_needed_here(argv: list[str], transfer: str) -> bool:
    """False for a command that only runs run_remote with transfer = "ssh": the job image then goes from its
    files to the remote engine; loading it here too would only cost time (build_image loads it for run_local
    and push)."""
    requested = params.run_steps(argv, STEPS)
    return not requested or set(requested) != {'run_remote'} or transfer != 'ssh'


def dodo_tasks(dodo_file: str, config_file: str | None = None) -> dict:
    """Everything a dodo.py needs: DOIT_CONFIG and the task_* creators.

    A bad pipeline.toml stops here, before doit runs any task, with one ERROR/TIP paragraph.
    """
    from tg_pipeline import config as config_module
    root = Path(dodo_file).resolve().parent
    try:
        variables = params.command_line(command_line_vars(), sys.argv[1:])
        config = config_module.load(config_file or os.environ.get('TG_PIPELINE_CONFIG') or root / 'pipeline.toml',
                                    overrides=variables)
        if runs_remote(sys.argv[1:]):  # the SSH login goes on while the tasks are made and the build steps run
            from tg_pipeline.ssh.early import connect_early
            connect_early(config)
        jobs = [config.job(variables['job']).name] if variables.get('job') else sorted(config.jobs)
        ctx = Context(config, variables)
        ctx.image_here = image_needed_here(sys.argv[1:], ctx.transfer())
        functions = doit_functions(ctx, jobs)
    except PipelineError as e:
        report(e)
        sys.exit(2)
    config.build_dir.mkdir(parents=True, exist_ok=True)
    functions['DOIT_CONFIG'] = doit_config(config.build_dir, default_tasks=['build_image'], verbosity=1,
                                           reporter=console_reporter())
    return functions
