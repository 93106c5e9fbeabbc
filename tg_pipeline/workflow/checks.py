"""What a command checks before any of its steps runs: everything about the runs it asks for that needs no network.

The form of every setting (a registry address, a remote host and port, mounts, ports, names) is checked where the
configuration is built (:mod:`tg_pipeline.config.build`), for every command. What depends on the command is checked
here, for the run steps it runs (``doit run_local``: run_local of the selected jobs), before the first build step:
the variables ``secret_env`` names are set here, the host paths of run_local's mounts exist on this machine, a
registry is there when the image goes through one. So a mistake costs no build. (The variables ``env`` names and
the env files are checked when the run step starts, as they always were: ``env_missing`` decides there.)

What needs the remote host (its mounts, its engine, whether its name resolves) is found by the run step itself; a
login that fails fast (a name that does not resolve, a refused connection) is reported before the build when the
early SSH login (:mod:`tg_pipeline.ssh.early`) has failed by the time build_image or push starts (see
:func:`tg_pipeline.workflow.build_steps.early_login_failed`).
"""
from __future__ import annotations

RUN_STEPS = ('run_local', 'run_remote', 'run_swarm')


def before_steps(ctx, jobs: list[str]) -> None:
    """Raise the first problem a run step that this command runs (``ctx.requested``) would meet after the build."""
    runs = [step for step in ctx.requested if step in RUN_STEPS]
    for job in jobs:
        for step in runs:
            _check_run(ctx, job, step)
        if 'push' in ctx.requested:
            ctx.delivery(job).registry_reference()


def _check_run(ctx, job: str, step: str) -> None:
    j = ctx.config.job(job)
    if j.run.secret_env:
        import os
        from tg_pipeline.runs.secrets import values
        values(j.run.secret_env, os.environ)
    delivery = ctx.delivery(job)
    if step == 'run_local':
        from tg_pipeline.hosts.host import Host
        from tg_pipeline.runs.resources import check_host_paths
        check_host_paths(j.run, Host('local', 'local', None), job)
    elif step == 'run_swarm':
        delivery.check_swarm()
    elif f'push:{job}' in delivery.needs(step):
        delivery.registry_reference()

