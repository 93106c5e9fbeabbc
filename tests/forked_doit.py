"""``python -m doit ARGS`` for the fast tier without paying for a new interpreter each time: a process that has
already imported what every doit command of a fixture project imports first (doit's command line, then
``tg_pipeline.tasks``, which every fixture's dodo.py imports) forks, and the child becomes the doit command.

The child is a process of its own, as ``subprocess.run([sys.executable, '-m', 'doit', *args], cwd=..., env=...,
capture_output=True, text=True)`` would start: its stdin is the caller's, its stdout and stderr are pipes the caller
reads to their end, its working folder, environment, ``sys.argv``, ``sys.orig_argv``, ``sys.path[0]`` and
``__main__`` are those of ``python -m doit`` (run by runpy as ``-m`` runs it), and it ends as that interpreter
would: ``sys.exit``, an uncaught exception (traceback, status 1), the exit handlers, the flush of its streams,
a signal. Only the imports above happened before, in the same order as in the command (and the few standard
modules this file uses). About 0.1 s of CPU less per command; the fast tier starts ~80 of them.

What an interpreter reads at start-up, or those imports read, comes from the environment the forking process
started with: a command whose environment differs there (:func:`startup_environment`) runs as a plain subprocess.
Two forking processes take turns, so that two commands in a row never share a string hash seed (as two
interpreters would not). ``TG_TEST_FORK_DOIT=0`` runs every command as a plain subprocess.

This file is also the forking process's code (:func:`serve`): standard library only, at the top.
"""
from __future__ import annotations

import json
import os
import struct
import sys

STARTUP_PREFIXES = ('PYTHON', 'LC_', 'TG_PIPELINE_')
STARTUP = ('LANG', 'LANGUAGE', 'HOME', 'TZ', 'TMPDIR', 'TEMP', 'TMP', 'SOURCE_DATE_EPOCH')


def startup_environment(env: dict) -> dict:
    """What of ``env`` an interpreter, or the imports done before the fork, read when they start."""
    return {k: v for k, v in env.items() if k in STARTUP or k.startswith(STARTUP_PREFIXES)}


# --- the forking process ------------------------------------------------------------------------------------
def preload() -> None:
    """What ``python -m doit`` in a fixture project imports first, in that order."""
    import doit.doit_cmd  # noqa: F401  (the command line: runpy imports doit, doit.__main__ imports DoitMain)
    import tg_pipeline.tasks  # noqa: F401  (every fixture's dodo.py: from tg_pipeline.tasks import dodo_tasks)


def serve(fd: int) -> None:
    """Fork a doit command for each request on the socket ``fd`` (its pid, then its exit status, back); end when
    the socket closes. In the child this returns only when doit returned without sys.exit: the end of ``-c``."""
    import socket
    sock = socket.socket(fileno=fd)
    preload()
    while True:
        request, fds = _receive(sock)
        if request is None:
            os._exit(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            _become_doit(request, fds)
            return
        for number in fds:
            os.close(number)
        sock.sendall(struct.pack('!q', pid))
        _, status = os.waitpid(pid, 0)
        sock.sendall(struct.pack('!q', os.waitstatus_to_exitcode(status)))


def _receive(sock):
    """One request (its JSON and its three file descriptors: stdin, stdout, stderr); (None, []) at the end."""
    import socket
    data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
    if not data:
        return None, []
    size = struct.unpack('!I', data[:4])[0]
    while len(data) < 4 + size:
        more = sock.recv(1 << 16)
        if not more:
            return None, []
        data += more
    return json.loads(data[4:4 + size]), fds


def _become_doit(request: dict, fds: list) -> None:
    """This process becomes ``python -m doit ARGS`` started in ``cwd`` with ``env`` (runpy runs doit's
    ``__main__`` as ``-m`` does; whatever it raises ends the process as it would end that one)."""
    import runpy
    for target, number in enumerate(fds):  # (each received as a number above 2: 0, 1 and 2 are open here)
        os.dup2(number, target)
        os.close(number)
    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    sys.argv = ['-m', *request['args']]
    sys.orig_argv = [sys.executable, '-m', 'doit', *request['args']]
    sys.path.insert(0, os.getcwd())  # (-m's first entry; the forking process removed -c's '')
    main = sys.modules['__main__'].__dict__
    builtins = main['__builtins__']
    main.clear()
    main.update(__name__='__main__', __doc__=None, __package__=None, __loader__=None, __spec__=None,
                __annotations__={}, __builtins__=builtins)
    runpy._run_module_as_main('doit')  # what `python -m doit` calls (private to runpy; tests only)


# the forking process's command: -c without its sys.path[0] ('', the working folder), then this file's serve()
BOOT = ("import sys; del sys.path[0]; import importlib.util as u; "
        "s = u.spec_from_file_location('_tg_forked_doit', sys.argv[1]); m = u.module_from_spec(s); "
        "s.loader.exec_module(m); m.serve(int(sys.argv[2]))")


# --- the caller -----------------------------------------------------------------------------------------------
class Forker:
    """One forking process, started with ``env`` (what decides its :func:`startup_environment`)."""

    def __init__(self, env: dict):
        import socket
        import subprocess
        import threading
        self.lock = threading.Lock()
        self.sock, theirs = socket.socketpair()
        self.process = subprocess.Popen([sys.executable, '-c', BOOT, __file__, str(theirs.fileno())], env=env,
                                        cwd='/', stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        pass_fds=[theirs.fileno()])
        theirs.close()

    def run(self, args, cwd, env: dict, timeout: float):
        """``subprocess.run([sys.executable, '-m', 'doit', *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=timeout)``, the child forked."""
        import socket
        import subprocess
        import time
        deadline = time.monotonic() + timeout
        out, err = os.pipe(), os.pipe()
        data = json.dumps({'args': list(args), 'cwd': str(cwd), 'env': env}).encode()
        message = struct.pack('!I', len(data)) + data
        try:
            sent = socket.send_fds(self.sock, [message], [0, out[1], err[1]])
            self.sock.sendall(message[sent:])
        finally:
            os.close(out[1])
            os.close(err[1])
        pid = self._number()
        try:
            stdout, stderr = _read_to_end(out[0], err[0], deadline)
        except subprocess.TimeoutExpired as expired:
            os.kill(pid, 9)
            self._number()
            raise subprocess.TimeoutExpired([sys.executable, '-m', 'doit', *args], timeout, expired.output,
                                            expired.stderr) from None
        code = self._number()
        return subprocess.CompletedProcess([sys.executable, '-m', 'doit', *args], code, _text(stdout), _text(stderr))

    def _number(self) -> int:
        data = b''
        while len(data) < 8:
            more = self.sock.recv(8 - len(data))
            if not more:
                self.process.kill()
                raise RuntimeError('the forking doit process ended:\n' + self.process.stderr.read().decode())
            data += more
        return struct.unpack('!q', data)[0]

    def close(self) -> None:
        """End the forking process: it ends when the socket closes, unless a child it waits for hangs."""
        import subprocess
        self.sock.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _read_to_end(out: int, err: int, deadline: float) -> tuple[bytes, bytes]:
    """Both pipes read until every writer closed them (as ``communicate`` does); TimeoutExpired after ``deadline``."""
    import selectors
    import subprocess
    import time
    got = {out: [], err: []}
    with selectors.DefaultSelector() as selector:
        for number in got:
            selector.register(number, selectors.EVENT_READ)
        try:
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired('doit', 0, b''.join(got[out]), b''.join(got[err]))
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        got[key.fd].append(chunk)
                    else:
                        selector.unregister(key.fd)
        finally:
            os.close(out)
            os.close(err)
    return b''.join(got[out]), b''.join(got[err])


def _text(data: bytes) -> str:
    """As ``subprocess.run(text=True)`` decodes: the locale's encoding, universal newlines."""
    import locale
    encoding = 'utf-8' if sys.flags.utf8_mode else locale.getencoding()
    return data.decode(encoding).replace('\r\n', '\n').replace('\r', '\n')


class Doit:
    """The fast tier's doit commands: forked (:class:`Forker`, two taking turns) when the environment's
    :func:`startup_environment` is the one the forking processes started with, else a plain subprocess."""

    def __init__(self):
        self.forkers: list[Forker] = []
        self.startup: dict | None = None
        self.turn = 0

    def forker(self, base_env: dict) -> Forker:
        """The next forking process, started at its first turn (the second then finds the first's bytecode)."""
        index, self.turn = self.turn % 2, self.turn + 1
        if index == len(self.forkers):
            self.forkers.append(Forker(base_env))
        return self.forkers[index]

    def run(self, args, cwd, env: dict, base_env: dict, timeout: float):
        import subprocess
        if os.environ.get('TG_TEST_FORK_DOIT', '1') != '0':
            if self.startup is None:
                import atexit
                self.startup = startup_environment(base_env)
                atexit.register(self.close)
            forker = self.forker(base_env) if startup_environment(env) == self.startup else None
            if forker is not None and forker.lock.acquire(blocking=False):
                try:  # (a command started from another thread meanwhile: a plain subprocess, not a wait)
                    return forker.run(args, cwd, env, timeout)
                finally:
                    forker.lock.release()
        return subprocess.run([sys.executable, '-m', 'doit', *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)

    def close(self) -> None:
        for forker in self.forkers:
            forker.close()
        self.forkers = []
