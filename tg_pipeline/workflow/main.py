"""The one doit set-up: :func:`dodo_tasks` gives a dodo.py its DOIT_CONFIG and task creators (a bad
pipeline.toml stops here with one ERROR/TIP paragraph); the Python API runs the same tasks."""
from __future__ import annotations
import gc
import os
import sys
from pathlib import Path
from tg_pipeline.workflow import params
from tg_pipeline.workflow.context import Context
from tg_pipeline.compat.doit import command_line_vars
from tg_pipeline.workflow.reporter import console_reporter
from tg_pipeline.errors import PipelineError, report
from tg_pipeline.workflow.tasks import STEPS, doit_functions


def task_module(ctx: Context, jobs: list[str], **doit_config) -> dict:
    """What doit loads, for the doit command (a dodo.py's globals) and for the Python API alike: the task_*
    creators of ``jobs`` and DOIT_CONFIG, whose state file any number of doit processes share (see
    :mod:`tg_pipeline.workflow.locks`), with ``doit_config`` on top."""
    from tg_pipeline.workflow import locks
    from tg_pipeline.workflow.checks import before_steps
    before_steps(ctx, jobs)  # what the run steps it runs would meet after the build: before it
    functions = doit_functions(ctx, jobs)
    functions['DOIT_CONFIG'] = {**locks.doit_config(ctx.config.build_dir), **doit_config}
    return functions


def run_tasks(ctx: Context, jobs: list[str], names: list[str], **doit_config) -> int:
    """Run doit on the tasks ``names`` of ``jobs`` in this process, as the doit command would (doit's own
    ``DoitMain`` over the same :func:`task_module`); doit's exit code."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain
    try:
        return DoitMain(ModuleTaskLoader(task_module(ctx, jobs, **doit_config))).run(names)
    finally:
        ctx.close_hosts()


def runs_remote(argv: list[str]) -> bool:
    """Whether this doit command runs run_remote (``doit run_remote ...``, ``doit run run_remote:X``), not merely
    names it (``doit help run_remote``, ``doit info ...``)."""
    return 'run_remote' in params.run_steps(argv, STEPS)


PRINTING_COMMANDS = ('list', 'help', 'info', 'dumpdb', 'tabcompletion')  # doit's commands that only print


def end_quietly_on_a_closed_pipe(argv: list[str]) -> None:
    """``doit list | head``: a doit command that only prints ends as other Unix programs do when the reader of
    its output is gone (SIGPIPE), not with doit's traceback of a BrokenPipeError. A command that runs steps
    keeps Python's way: it has runs to stop and records to write."""
    import signal
    words = params.command_words(argv)
    if words[:1] and words[0] in PRINTING_COMMANDS and hasattr(signal, 'SIGPIPE'):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def dodo_tasks(dodo_file: str, config_file: str | None = None) -> dict:
    """Everything a dodo.py needs: DOIT_CONFIG and the task_* creators.

    A bad pipeline.toml stops here, before doit runs any task, with one ERROR/TIP paragraph.
    """
    from tg_pipeline import config as config_module
    from tg_pipeline.compat.doit import watch_exit_handlers
    watch_exit_handlers()  # an exit handler that raises makes the exit status not 0
    end_quietly_on_a_closed_pipe(sys.argv[1:])
    root = Path(dodo_file).resolve().parent
    try:
        variables = params.command_line(command_line_vars(), sys.argv[1:])
        config = config_module.load(config_file or os.environ.get('TG_PIPELINE_CONFIG') or root / 'pipeline.toml',
                                    overrides=variables)
        if runs_remote(sys.argv[1:]):  # the SSH login goes on while the tasks are made and the build steps run
            from tg_pipeline.ssh.early import connect_early
            connect_early(config)
        jobs = [config.job(variables['job']).name] if variables.get('job') else sorted(config.jobs)
        from tg_pipeline.workflow.gpus import check_early
        check_early(config, jobs, params.run_steps(sys.argv[1:], STEPS))  # gpus=9 on a box of 8: before any build
        ctx = Context(config, variables, requested=params.run_steps(sys.argv[1:], STEPS))
        tasks = task_module(ctx, jobs, default_tasks=['build_image'], verbosity=1, reporter=console_reporter())
    except PipelineError as e:
        report(e)
        sys.exit(2)
    # what is loaded now (modules, the configuration, the tasks) lives as long as this doit process: Python's
    # collector need not walk it again and again while the steps allocate (a tree of 2,000 modules: an sdist index
    # of thousands of entries, collected through all of it, cost 30-40 ms per step)
    gc.freeze()
    return tasks
