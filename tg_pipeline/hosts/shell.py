"""Shell commands on a host: here (``sh -c``) or on a remote host over its SSH connection, the same command
text for both, so what runs on a box with real hardware is what the tests run (``nvidia-smi``, ``flock``).

* :func:`run`: a command's exit code and output (127: no such command there).
* :class:`Held`: a command kept open until it is closed: its first line says it got what it waits for (a lock),
  and closing its input ends it. A client that dies ends it too: the SSH server (or this machine's kernel)
  closes its input, so a lock it holds is never left behind.
"""
from __future__ import annotations

import subprocess
from typing import IO, NamedTuple

from tg_pipeline.errors import PipelineError


class Output(NamedTuple):
    code: int
    out: str
    err: str


def run(host, command: str, timeout: float = 60) -> Output:
    """``command`` (POSIX shell) on ``host``: here, or over its SSH connection."""
    if not host.remote:
        try:
            done = subprocess.run(['sh', '-c', command], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PipelineError(f'the command "{command}" did not end within {timeout:g} s on this machine') from None
        return Output(done.returncode, done.stdout, done.stderr)
    if host.connection is None:
        raise PipelineError(f'{host.name} is reached through its Docker engine only: no shell to run "{command}"')
    try:
        done = host.connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - invoke's CommandTimedOut, a broken connection: said as ours
        raise PipelineError(f'the command "{command}" failed on {host.name}: {type(e).__name__}: {e}') from None
    return Output(done.exited if done.exited is not None else -1, done.stdout, done.stderr)


class Held:
    """``command`` running on ``host`` until :meth:`close`; :meth:`wait_line` reads its first line."""

    def __init__(self, host, command: str):
        self.host, self.command = host, command
        self.process: subprocess.Popen[bytes] | None  # here or over the ssh program; None with a channel
        if host.remote and hasattr(host.connection, 'command'):  # the ssh program: a channel of the shared connection
            self.channel = None
            self.process = subprocess.Popen(host.connection.command(command), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        elif host.remote:  # paramiko's connection
            self.channel = host.connection.client.get_transport().open_session()
            self.channel.exec_command(command)
            self.process = None
        else:
            self.channel = None
            self.process = subprocess.Popen(['sh', '-c', command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE)

    def wait_line(self, patience: float, waiting) -> str:
        """The command's first line ('' when it ended without one); ``waiting()`` is called once when none came
        within ``patience`` seconds (say what it waits for), then this waits on."""
        import select
        said = False
        while True:
            if self.channel is not None:
                ready = self.channel.recv_ready() or self.channel.exit_status_ready() or \
                    bool(select.select([self.channel], [], [], patience)[0])
            else:
                ready = bool(select.select([self._pipes()[1]], [], [], patience)[0])
            if ready:
                return self._line()
            if not said:
                waiting()
                said = True

    def _line(self) -> str:
        data = b''
        while not data.endswith(b'\n'):
            piece = self.channel.recv(1) if self.channel is not None else self._pipes()[1].read(1)
            if not piece:
                break
            data += piece
        return data.decode('utf-8', 'replace').strip()

    def error_text(self) -> str:
        """What the command said on stderr (after it ended)."""
        if self.channel is not None:
            text = b''
            self.channel.recv_exit_status()
            while self.channel.recv_stderr_ready():
                text += self.channel.recv_stderr(65536)
            return text.decode('utf-8', 'replace').strip()
        self.close()
        return self._pipes()[2].read().decode('utf-8', 'replace').strip()

    def close(self) -> None:
        """End the command: its input closes, and it (with the lock it holds) goes."""
        if self.channel is not None:
            try:
                self.channel.shutdown_write()
            finally:
                self.channel.close()
            return
        stdin = self._pipes()[0]
        if stdin and not stdin.closed:
            stdin.close()
        process = self._process()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _process(self) -> subprocess.Popen[bytes]:
        """The command's process here (a Held without a channel has one)."""
        assert self.process is not None, 'a Held without a channel runs here'
        return self.process

    def _pipes(self) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
        """The stdin, stdout and stderr of the process here (all three are pipes)."""
        process = self._process()
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        return process.stdin, process.stdout, process.stderr
