"""`doit check_remote`: the preflight. One line per check, each failure with its fix.

The checks are exactly what usually goes wrong on the way to a remote run:
SSH login, Docker permissions of that user on the remote, pushing to the
registry from here, pulling from it on the remote; plus the remote versions.
"""
from __future__ import annotations

import io
import tarfile

from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.hosts.engine import local_engine
from tg_pipeline.image.registry import pull, push, remote_reference
from tg_pipeline.ssh.settings import RemoteTarget
from tg_pipeline.ssh.transport import open_remote

PROBE = 'tg-pipeline-probe:1'


def _probe_image(client) -> str:
    """A one-file image FROM scratch: pushing it proves the registry accepts pushes, at ~no cost."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode='w') as tar:
        for name, data in (('Dockerfile', b'FROM scratch\nCOPY probe.txt /probe.txt\n'),
                           ('probe.txt', b'tg_pipeline registry probe\n')):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 946684800
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=PROBE, rm=True)
    return image.id


class Report:
    def __init__(self, console: Console = CONSOLE):
        self.console = console
        self.failed = 0

    def ok(self, what: str, detail: str):
        self.console.print(f'[ OK ] {what}: {detail}')

    def fail(self, what: str, error: BaseException):
        self.failed += 1
        message = error.message.splitlines()[0] if isinstance(error, PipelineError) else \
            f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else "(no message)"}'
        self.console.print(f'[FAIL] {what}: {message}')
        hint = getattr(error, 'hint', None)
        if hint:
            self.console.print(f'       TIP: {hint}')

    def attempt(self, what: str, check, detail):
        """``check()``: its value, with an [ OK ] line saying ``detail(value)``; or None, with a [FAIL] line, when
        it raised (any error: the point of a preflight is to say each one)."""
        try:
            value = check()
        except Exception as e:  # noqa: BLE001 - said as this check's failure, with its type when not ours
            self.fail(what, e)
            return None
        self.ok(what, detail(value))
        return value

    def skip(self, what: str, why: str):
        self.console.print(f'[SKIP] {what}: {why}')


def check_remote(target: RemoteTarget, registry: str, auth=None, console: Console = CONSOLE) -> int:
    """Run every check, print one line each; return the number of failures. A check that fails in any way (a
    connection cut in the middle of an answer too) is a [FAIL] line, and the checks that need it are skipped."""
    report = Report(console)
    remote = report.attempt('ssh login', lambda: open_remote(target), lambda r: r.name)
    version = None if remote is None else report.attempt('docker on the remote', lambda: remote.docker.version(), lambda v: (
        f"engine {v.get('Version', '?')} (API {v.get('ApiVersion', '?')}) usable by {remote.connection.user}"))
    reference = None
    if registry:
        reference = report.attempt('registry push from here', lambda: _push_probe(registry, auth, console),
                                   lambda pushed: pushed[0])
    else:
        report.skip('registry', 'no [registry] address configured')
    if version is not None and reference is not None:
        report.attempt('registry pull on the remote', lambda: _pull_probe(remote, reference, auth, console),
                       lambda _: reference[0])
    if version is not None:
        report.attempt('remote versions', lambda: _python_version(remote),
                       lambda python: f'Docker {version.get("Version", "?")}; {python}')
    if remote is not None:
        remote.close()
    console.print('all checks passed' if not report.failed else f'{report.failed} check(s) failed')
    return report.failed


def _push_probe(registry: str, auth, console: Console) -> tuple[str, str]:
    """Push the probe image to ``registry``: (its reference there, its image id)."""
    client = local_engine()
    image_id = _probe_image(client)
    reference = remote_reference(registry, PROBE)
    push(image_id, reference, auth=auth, console=console.replace(quiet=True), client=client)
    return reference, image_id


def _pull_probe(remote, pushed: tuple[str, str], auth, console: Console) -> None:
    reference, image_id = pushed
    pull(remote.docker, reference, image_id, auth, console.replace(quiet=True), host=remote.connection.host)
    remote.docker.images.remove(reference, force=True)


def _python_version(remote) -> str:
    python = remote.connection.run('python3 --version', hide=True, warn=True, in_stream=False)
    return (python.stdout or python.stderr).strip() if python.exited == 0 else 'no python3 (not needed)'
