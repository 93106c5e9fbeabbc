"""The SSH login to [remote], started in a thread as soon as a doit command that runs run_remote has read its
configuration (:func:`connect_early`), while this process makes its tasks and does its local steps;
:func:`tg_pipeline.hosts.host.open_host` takes that connection when it needs one (:func:`take`).

This module imports neither docker nor paramiko: the thread starts before the main thread imports the Docker SDK
(~50 ms). With the ssh program (:mod:`tg_pipeline.ssh.openssh`) the login is a child process, which holds no
interpreter lock while the build steps run; with paramiko the thread imports paramiko and fabric itself.
"""
from __future__ import annotations

_EARLY: dict = {}  # [remote] settings (frozen) -> (thread, {'remote': Remote} and/or {'error': exception})


def connect_early(config) -> None:
    """Start the SSH login to [remote] (and the first Docker request over it) in a thread; :func:`take` hands it
    over, or raises the login's error, if any, there and then, as if it had connected itself. Unused
    connections are closed at exit."""
    import atexit
    import threading
    key = config.remote
    if not key.host or key in _EARLY:
        return
    box: dict = {}

    def login():
        try:
            from tg_pipeline.ssh.settings import RemoteTarget
            from tg_pipeline.ssh.transport import open_remote
            remote = open_remote(RemoteTarget.from_config(config.remote, getattr(config, 'project', '')))
            box['remote'] = remote
            remote.docker  # noqa: B018  (the engine's version, asked over the new connection)
        except BaseException as e:  # handed to the main thread by take()
            box['error'] = e
    thread = threading.Thread(target=login, name='tg-pipeline-early-ssh', daemon=True)
    _EARLY[key] = (thread, box)
    if len(_EARLY) == 1:
        atexit.register(close_untaken)
    thread.start()


def take(config):
    """The login :func:`connect_early` started for ``config``'s [remote] (once), waited for; None if none was."""
    early = _EARLY.pop(config.remote, None)
    if early is None:
        return None
    thread, box = early
    thread.join()
    if 'error' in box:
        if 'remote' in box:
            box['remote'].close()
        raise box['error']
    return box['remote']


def peek(config):
    """The login :func:`connect_early` started for ``config``'s [remote], waited for and left for :func:`take`;
    None if none was started. Its error is raised here (and taken: :func:`take` then opens a login of its own)."""
    early = _EARLY.get(config.remote)
    if early is None:
        return None
    thread, box = early
    thread.join()
    if 'error' in box:
        return take(config)
    return box['remote']
def failed(config):
    """The error of the login :func:`connect_early` started for ``config``'s [remote], when it has ended with one of
    ours (a :class:`~tg_pipeline.errors.PipelineError`: a name that does not resolve, a refused login) by now;
    None while it goes on, after it succeeded, or when none was started. It stays for :func:`take` too."""
    from tg_pipeline.errors import PipelineError
    early = _EARLY.get(config.remote)
    if early is None or early[0].is_alive():
        return None
    error = early[1].get('error')
    return error if isinstance(error, PipelineError) else None


def close_untaken() -> None:
    """At exit: close logins nobody took (a build step failed first); one still connecting is left to die with
    the process (its thread is a daemon), so a failed build never waits for a slow host."""
    for thread, box in _EARLY.values():
        thread.join(timeout=0.2)
        if 'remote' in box:
            box['remote'].close()
    _EARLY.clear()
