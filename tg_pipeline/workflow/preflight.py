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
        message = error.message.splitlines()[0] if isinstance(error, PipelineError) else f'{error}'
        self.console.print(f'[FAIL] {what}: {message}')
        hint = getattr(error, 'hint', None)
        if hint:
            self.console.print(f'       TIP: {hint}')

    def skip(self, what: str, why: str):
        self.console.print(f'[SKIP] {what}: {why}')


def check_remote(target: RemoteTarget, registry: str, auth=None, console: Console = CONSOLE) -> int:
    """Run every check, print one line each; return the number of failures."""
    report = Report(console)
    remote = None
    try:
        remote = open_remote(target)  # the SSH client runs use: the ssh program's shared connection, or paramiko
        report.ok('ssh login', remote.name)
    except PipelineError as e:
        report.fail('ssh login', e)
    if remote is not None:
        try:
            engine_version = remote.docker.version()
            docker_version = engine_version.get('Version', '?')
            report.ok('docker on the remote', f"engine {docker_version} (API {engine_version.get('ApiVersion', '?')}) "
                                              f"usable by {remote.connection.user}")
        except PipelineError as e:
            report.fail('docker on the remote', e)
            remote.close()
            remote = None
    reference = None
    if registry:
        try:
            client = local_engine()
            image_id = _probe_image(client)
            reference = remote_reference(registry, PROBE)
            push(image_id, reference, auth=auth, console=console.replace(quiet=True), client=client)
            report.ok('registry push from here', f'{reference}')
        except PipelineError as e:
            report.fail('registry push from here', e)
            reference = None
    else:
        report.skip('registry', 'no [registry] address configured')
    if remote is not None and reference:
        try:
            pull(remote.docker, reference, image_id, auth, console.replace(quiet=True), host=remote.connection.host)
            report.ok('registry pull on the remote', reference)
            remote.docker.images.remove(reference, force=True)
        except PipelineError as e:
            report.fail('registry pull on the remote', e)
    if remote is not None:
        python = remote.connection.run('python3 --version', hide=True, warn=True, in_stream=False)
        version = (python.stdout or python.stderr).strip() if python.exited == 0 else 'no python3 (not needed)'
        report.ok('remote versions', f'Docker {docker_version}; {version}')
        remote.close()
    console.print('all checks passed' if not report.failed else f'{report.failed} check(s) failed')
    return report.failed
