"""The doit task graph, built from pipeline.toml (dodo.py calls :func:`dodo_tasks`) or from the Python API.

Tasks are per job, as doit sub-tasks ``STEP:JOB`` (``doit run_local:ExampleJob`` or
``doit run_local job=ExampleJob``)::

    serialize -> sdist -> build_image -> run_local
    dockerfile ------------^      `---> push -> run_remote, run_swarm
    serialize -> run_attached

This module only wires: each action is a function of :mod:`tg_pipeline.workflow.build_steps`; file deps, targets and
up-to-date checks say when it must run again.
"""
from __future__ import annotations

from typing import Any, Callable

from doit.exceptions import BaseFail, TaskFailed
from doit.tools import config_changed

from tg_pipeline.workflow import commands, params, build_steps as steps, what_ran
from tg_pipeline.workflow.rerun import rerun
from tg_pipeline.workflow.commands import check_remote, draw_graph, show_config
from tg_pipeline.workflow.run_steps import clean_runs, lifecycle_step, run_attached, run_local, run_remote, run_swarm, say_failed_run
from tg_pipeline.workflow.context import Context
from tg_pipeline.workflow.gpus import show_gpus
from tg_pipeline.errors import PipelineError, report

# (step, one-line doc) in graph order; the docs show in `doit list`
STEPS = {
    'serialize': 'pickle the job object (cloudpickle) into its payload file',
    'sdist': 'package source roots + payload as a reproducible sdist named name__version',
    'dockerfile': 'render Dockerfile + requirements.txt from templates/*.j2',
    'build_image': 'dependency image (Docker SDK build, only when requirements change) + code layer, appended',
    'run_attached': 'run the job in this process, loaded back from its payload',
    'run_local': 'run the job image on the local Docker engine, streaming its output',
    'push': 'tag and push the job image to the [registry] (skipped while it has that digest)',
    'run_remote': 'run the job image on the [remote] Docker host over SSH, streaming its output',
    'run_swarm': 'run the image on Docker Swarm as a replicated job: one task per sweep variant',
    'status': 'list this project\'s runs of the job and their state (where=local|remote|swarm, all_projects=1)',
    'logs': 'print a run\'s whole output; follow=1 re-attaches until it ends (where=, run_id=)',
    'stop': 'stop a running run (the latest, or run_id=...), collect and remove it (where=)',
    'result': 'print the return value of an ended run, collecting it (where=, run_id=)',
    'exec': 'run cmd="..." in the job\'s running container, print its output and exit code (where=, run_id=)',
    'forward': 'forward local_port= here to port= of the job\'s running container until Ctrl-C (where=, run_id=)',
}
LIFECYCLE = ('status', 'logs', 'stop', 'result')
# the tasks of the whole project: name -> (doc, action)
SINGLE_TASKS = {
    'graph': ('draw the delivery steps of the jobs (all=1: every step, files=1: their files) and what would run '
              'now, as build/graph.dot (and .png where graphviz is installed)', draw_graph),
    'check_remote': ('preflight of the remote: SSH login, Docker there, registry push here and pull there',
                     check_remote),
    'cleanup': ('remove this project\'s ended runs older than days=N (default 7) from the host '
                '(where=local|remote|swarm)', commands.cleanup),
    'config': ('print the effective configuration (secret-looking env values as ***)', show_config),
    # what ran (tg_pipeline.provenance): every run keeps its code, settings, dependencies and host
    'show': ('print what a run ran: code, git state, configuration, dependencies, host (run_id=)', what_ran.show),
    'runs': ('list the runs kept here, one line each (where=, job= to filter)', what_ran.runs),
    'diff': ('what differs between two runs: code, configuration, dependencies, base image, host '
             '(run_a= run_b=; exit status 1 when they differ)', what_ran.diff),
    'rerun': ('run a kept run\'s code and payload again, whatever the work tree holds now (run_id=, where=)',
              rerun),
    'export': ('write a run\'s source tree, payload and configuration to a folder (run_id=, dest=)', what_ran.export),
    'gpus': ('print the GPUs of a host (where=local|remote, host=NAME), their memory and the run that holds each',
             show_gpus),
}
DOCUMENTS = ('config', 'show', 'runs', 'diff', 'export')  # their output is the point: no step line


def action(ctx: Context, function, *args):
    """A doit python-action: our errors become TaskFailed with ERROR/TIP text, not a traceback."""
    def run():
        try:
            outcome = function(ctx, *args)  # a task whose failure is its answer returns it (doit diff)
        except PipelineError as e:  # said once, as ERROR/TIP: doit's reporter does not repeat it
            ctx.errors.append(e)
            if not ctx.capture:
                report(e)
                say_failed_run(e, ctx.outcome_console())
            return TaskFailed(e.message.splitlines()[0], report=ctx.capture)
        except KeyboardInterrupt as e:  # what happened to the run was printed where it was handled
            ctx.errors.append(e)
            return TaskFailed('interrupted (Ctrl-C)', report=ctx.capture)
        except Exception as e:
            if not ctx.capture:
                raise
            ctx.errors.append(e)
            return TaskFailed(f'{type(e).__name__}: {e}')
        return outcome if isinstance(outcome, BaseFail) else None
    run.__name__ = getattr(function, '__name__', 'action')
    return run


def source_files(ctx: Context) -> list[str]:
    """What the build steps depend on for the source roots: their manifest (one file, see
    :mod:`tg_pipeline.package.manifest`), or every file where the build folder cannot be written."""
    from tg_pipeline.package import manifest
    from tg_pipeline.package.sdist import source_files as found
    try:
        return [str(manifest.refresh(ctx.config.build_dir, ctx.config.source_roots))]
    except OSError:
        return [str(p) for p in found(ctx.config.source_roots)]


def package_inputs() -> list[str]:
    """Our own files that shape the sdist: its templates and the in-container runtime."""
    from tg_pipeline.package import templates
    from tg_pipeline.package import sdist
    files = [f for f in templates.files() if f.name == 'pyproject.toml.j2']
    return [str(f) for f in [*files, *sdist.runtime_files()]]


def build_tasks(ctx: Context, job: str, sources: list[str]) -> dict[str, dict]:
    """The build steps of one job, each run under the job's lock (one doit process at a time builds a job;
    a step another process just did from the same inputs is not done again)."""
    from tg_pipeline.workflow.locks import JobLock
    tasks = _build_tasks(ctx, job, sources)
    lock = JobLock(ctx.paths(job).lock, job)
    # `doit clean STEP:JOB` removes the step's targets: for build_image the recorded image.json, never an image
    return {step: dict(lock.guard(step, task), clean=True) for step, task in tasks.items()}


def _build_tasks(ctx: Context, job: str, sources: list[str]) -> dict[str, dict]:
    from tg_pipeline.package import templates
    j, p = ctx.config.job(job), ctx.paths(job)
    resources = [str(p.resource(name)) for name in ctx.resource_names(job)]
    if job in ctx.payloads:  # pickled in memory already: up to date while the bytes are the same
        serialize = dict(targets=resources, uptodate=[config_changed(ctx.payload_key(job))])
    else:
        serialize = dict(targets=resources, file_dep=sources, uptodate=[config_changed(j.fingerprint())])
    return {
        'serialize': dict(serialize, actions=[action(ctx, steps.serialize, job)]),
        'sdist': dict(
            actions=[action(ctx, steps.sdist, job)], targets=[str(p.sdist)],
            file_dep=[*resources, *sources, *package_inputs()],
            uptodate=[config_changed({'module': j.module, 'deps': list(j.dependencies),
                                      'roots': list(ctx.config.package.source_roots)})]),
        'dockerfile': dict(
            actions=[action(ctx, steps.dockerfile, job)], targets=[str(p.dockerfile), str(p.requirements)],
            file_dep=[str(f) for f in templates.files() if f.name == 'Dockerfile.j2'],
            uptodate=[config_changed(steps.dockerfile_values(ctx, job))]),
        'build_image': dict(
            actions=[action(ctx, steps.build_image, job)],
            targets=[str(p.image), str(p.image_config), str(p.code_layer)],
            file_dep=[str(p.dockerfile), str(p.requirements), str(p.sdist)],
            uptodate=[lambda: steps.image_current(ctx, job),
                      config_changed({'tag': ctx.image_tag(job), **steps.image_settings(ctx, job)})], verbosity=2),
        'push': dict(
            actions=[action(ctx, steps.push, job)], targets=[str(p.push)], file_dep=[str(p.image)],
            uptodate=[lambda: steps.push_current(ctx, job)], verbosity=2),
    }


# a run's output goes to its log files and the terminal as it comes: doit must not keep a copy in memory
STREAMED = {'capture': False}


def run_tasks(ctx: Context, job: str) -> dict[str, dict]:
    delivery = ctx.delivery(job)
    tasks = {
        'run_attached': dict(actions=[action(ctx, run_attached, job)], task_dep=[f'serialize:{job}']),
        'run_local': dict(actions=[action(ctx, run_local, job)], task_dep=delivery.needs('run_local'),
                          clean=[(clean_runs, [ctx, job, 'local'])]),
        'run_remote': dict(actions=[action(ctx, run_remote, job)], task_dep=delivery.needs('run_remote'),
                           clean=[(clean_runs, [ctx, job, 'remote'])]),
        'run_swarm': dict(actions=[action(ctx, run_swarm, job)], task_dep=delivery.needs('run_swarm'),
                          clean=[(clean_runs, [ctx, job, 'swarm'])]),
        **{step: dict(actions=[action(ctx, lifecycle_step, job, step)], uptodate=[False])
           for step in LIFECYCLE},
        **{step: dict(actions=[action(ctx, commands.reach_step, job, step)], uptodate=[False])
           for step in ('exec', 'forward')},
    }
    return {step: dict(task, io=STREAMED) for step, task in tasks.items()}


def all_tasks(ctx: Context, jobs: list[str], sections: list[dict] | None = None) -> dict[str, list[dict]]:
    """step -> sub-task dicts for every selected job (their params: the settings, for `doit help STEP:JOB`);
    ``sections``: :func:`params.section_settings` of the config, when made already."""
    found: dict[str, list[dict]] = {s: [] for s in STEPS}
    sources = source_files(ctx)
    detail = not ctx.requested  # a command that runs steps shows no help: no setting's value now in it
    if sections is None:
        sections = params.section_settings(ctx.config, detail)  # (once: ~4 ms a job)
    for job in jobs:
        settings = params.settings(ctx.config, job, sections, detail)
        for step, task in {**build_tasks(ctx, job, sources), **run_tasks(ctx, job)}.items():
            task.setdefault('verbosity', 2)
            found[step].append(dict(task, name=job, doc=f'{STEPS[step]} [{job}]',
                                    params=params.for_task(step, settings, [job])))
    return found


def doit_functions(ctx: Context, jobs: list[str]) -> dict:
    """``task_*`` functions for a dodo module's globals (or a doit ModuleTaskLoader)."""
    detail = not ctx.requested  # as in all_tasks
    sections = params.section_settings(ctx.config, detail)
    tasks = all_tasks(ctx, jobs, sections)
    settings = params.settings(ctx.config, None, sections, detail)
    functions: dict[str, Callable[..., Any]] = {}
    for step, subtasks in tasks.items():
        def creator(step=step, subtasks=subtasks):  # first the group task: `doit help STEP` lists its params
            yield {'name': None, 'doc': STEPS[step], 'params': params.for_task(step, settings, jobs)}
            yield from (dict(t) for t in subtasks)  # doit rewrites 'name' in what it gets
        creator.__doc__ = STEPS[step]
        functions[f'task_{step}'] = creator

    from tg_pipeline.workflow.graph import Probe
    probe = Probe()  # doit hands it its dependency manager: `doit graph` asks it what is up to date
    arguments = {'graph': (tasks, probe), 'config': (jobs,)}
    for name, (doc, function) in SINGLE_TASKS.items():
        task = {'actions': [action(ctx, function, *arguments.get(name, ()))], 'verbosity': 2,
                'uptodate': [probe if name == 'graph' else False], 'params': params.for_task(name, settings, jobs),
                'meta': {'document': name in DOCUMENTS}, 'io': STREAMED}  # `doit config`: the TOML alone
        functions[f'task_{name}'] = lambda task=task: dict(task)
        functions[f'task_{name}'].__doc__ = doc
    return functions


