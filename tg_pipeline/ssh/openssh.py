"""The remote engine over the ssh program, as Ansible and the Docker CLI reach hosts: ONE shared connection (an
OpenSSH ControlMaster) per user, host and project, kept ``control_persist`` seconds after its last channel closed;
every Docker connection is a channel on it (``ssh -S PATH HOST docker system dial-stdio``): a few milliseconds,
no login, no paramiko in this process.

* The control sockets live in a folder only the user can read (0700: ``$XDG_RUNTIME_DIR/tg_pipeline/ssh``, else
  ``~/.cache/tg_pipeline/ssh`` of the passwd home); a socket's name hashes the local user, the project, and the
  host as OpenSSH resolved it (user, address, port, jumps, config file, key): two users or two projects never
  share one, and no name is guessable in a shared folder.
* A ControlMaster the user's ssh config sets is used as it is: then the channels are plain ``ssh HOST ...``.
* The master is started by ``ssh -M -N -f`` (the login, once; its words go to ``PATH.log``); a stale socket (its
  process killed, the host rebooted) is found by connecting to it, and a master whose link dropped by the first
  request giving no answer: either is replaced, once, without a word to the user.
* ServerAliveInterval/CountMax (15 s x 3 unless the ssh config says) are the master's keepalives; when it gives up,
  :meth:`OpenSSH.lost` says why, from its log.
* Once a master of ours is up, the remote engine's own socket is forwarded to ``PATH.docker`` here (``ssh -O forward
  -L``, where the remote's docker CLI says the engine listens on a Unix socket): later Docker connections are a
  ``connect()`` here and a channel of the master, with no ssh process here and no docker CLI there (10 ms instead
  of 35-40 ms each). The first command after the login makes it, beside its own work; where the remote refuses
  (sshd's ``AllowStreamLocalForwarding no``, an engine on TCP, a docker CLI without contexts), the channels stay
  ``docker system dial-stdio``, and the refusal is remembered while that master lives (``PATH.noforward``).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import socket
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

from tg_pipeline.errors import SSHError
from tg_pipeline.ssh.errors import openssh_error, ssh_lines
from tg_pipeline.ssh.settings import RemoteTarget, SSHSettings, home

ENDED = re.compile(r'Timeout, server|closed by|Connection reset|Broken pipe|Killed by signal|not responding')
SOCKET_PATH_MAX = 100  # sun_path holds 104 (macOS) or 108 (Linux) bytes; ssh adds a suffix while it binds: 17 more
START_MARGIN = 60  # seconds a login may take beyond ConnectTimeout (a slow key exchange, a jump host)
UNIX_PATH_MAX = 107  # a Unix socket's path, in bytes (Linux: 108 with the NUL)
FORWARD_CHECK_S = 10  # how long a new forward may take to answer its first request
ENGINE_ENDPOINT = "docker context inspect --format '{{.Endpoints.docker.Host}}'"  # honours DOCKER_HOST there


def control_dir() -> str:
    """The folder of the control sockets, made 0700 and checked to be the user's own."""
    runtime = os.environ.get('XDG_RUNTIME_DIR', '')
    base = runtime if runtime and _own_dir(runtime) else os.path.join(home(), '.cache')
    path = os.path.join(base, 'tg_pipeline', 'ssh')
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SSHError(f'{path} is not a folder of your own: the shared SSH connections cannot be kept there',
                       hint=f'remove it (rm -rf {path}), or set ssh_client = "paramiko" in [remote]')
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _own_dir(path: str) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and os.access(path, os.W_OK)


def control_name(target: RemoteTarget, s: SSHSettings) -> str:
    """The socket's name: a hash of who connects, for which project, to what (as resolved), and how."""
    key = '\0'.join([str(os.getuid()), target.project, s.user, s.hostname, str(s.port), s.proxy_jump,
                     s.proxy_command, s.config_file, target.identity_file, s.alias])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass
class Result:
    """What a command on the remote did (the fields fabric's Result has)."""
    exited: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether it exited 0, as fabric's ``Result.ok`` (what ran's host facts read nvidia-smi's answer by)."""
        return self.exited == 0


class ChannelSocket(socket.socket):
    """Our end of a socketpair whose other end is the stdin and stdout of an ``ssh`` process (one channel);
    closing it ends the channel."""

    def __init__(self, sock: socket.socket, process: subprocess.Popen, errors):
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.process, self.errors = process, errors

    def _real_close(self, *args, **kwargs):
        super()._real_close(*args, **kwargs)  # type: ignore[misc]  # CPython's socket: what close() ends with
        self.errors.close()
        self.process.poll()  # EOF on its stdin ends it; the subprocess module reaps it later if it has not yet


class OpenSSH:
    """The ssh program's way to one host: the shared master, channels on it, commands, forwards."""

    def __init__(self, target: RemoteTarget, settings: SSHSettings):
        self.target, self.settings = target, settings
        self.host, self.user, self.port = settings.hostname, settings.user, settings.port
        self.own = not settings.control_master  # False: the user's ssh config shares connections itself
        self.path = os.path.join(control_dir(), control_name(target, settings)) if self.own else ''
        if len(self.path) > SOCKET_PATH_MAX:
            raise SSHError(f'the control socket path {self.path} is too long for a Unix socket',
                           hint='set XDG_RUNTIME_DIR to a short folder of your own (e.g. /run/user/$(id -u)), or '
                                'ssh_client = "paramiko" in [remote]')
        self.started = False  # this process started the master (a login)
        self.last_channel: ChannelSocket | None = None

    # --- the ssh command lines ------------------------------------------------------------------------
    def options(self) -> list[str]:
        s, t = self.settings, self.target
        args = ['ssh', *(['-F', s.config_file] if s.config_file else []), '-o', 'BatchMode=yes',
                '-o', f'ConnectTimeout={math.ceil(s.connect_timeout)}',
                '-o', f'ServerAliveInterval={math.ceil(s.alive_interval)}', '-o', f'ServerAliveCountMax={s.alive_count}',
                '-l', s.user, '-p', str(s.port)]
        if t.identity_file:
            args += ['-i', s.identity_files[0]]
        if t.accept_unknown_host_keys:
            args += ['-o', 'StrictHostKeyChecking=accept-new']
        if self.own:
            args += ['-o', 'ControlPath=' + self.path.replace('%', '%%')]
        return args

    def command(self, *remote: str, forward: str = '') -> list[str]:
        """The argv of one channel: ``remote`` run there, or a ``-W`` stdio forward to ``forward``."""
        mux = ['-o', 'ControlMaster=no'] if self.own else []
        where = ['-W', forward, self.settings.alias] if forward else ['-T', self.settings.alias, '--', *remote]
        return [*self.options(), *mux, *where]

    # --- the master -----------------------------------------------------------------------------------
    def alive(self) -> bool:
        """Whether a master listens on our socket (a stale socket file is removed)."""
        if not self.own:
            return True
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
            return True
        except ConnectionRefusedError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # its process is gone (killed, or the machine restarted)
            return False
        except OSError:
            return False
        finally:
            probe.close()

    def ensure(self) -> None:
        """A master on our socket: the one there, or a new one (the login)."""
        if self.alive():
            return
        with self._lock():
            if not self.alive():
                self._start()

    @contextlib.contextmanager
    def _lock(self):
        import fcntl
        with open(self.path + '.lock', 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two commands at once: one logs in, the other uses its master
            yield

    def _start(self) -> None:
        _tidy(os.path.dirname(self.path))
        persist = max(1, math.ceil(self.target.control_persist))
        log = self.path + '.log'
        with open(log, 'w'):
            pass  # the new master's words only
        for leftover in (self.path, self.forward_path, self.path + '.noforward'):  # (a master that finds a socket
            with contextlib.suppress(OSError):  # there would log in without sharing, and stay in the background)
                os.unlink(leftover)  # the last master's forward and its refusal were that master's
        argv = [*self.options(), '-o', 'ControlMaster=yes', '-o', f'ControlPersist={persist}', '-E', log,
                '-N', '-f', self.settings.alias]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True, timeout=self.settings.connect_timeout + START_MARGIN)
        except subprocess.TimeoutExpired:
            raise SSHError(f'the SSH login to {self.settings.alias} did not finish within '
                           f'{self.settings.connect_timeout + START_MARGIN:g} s',
                           hint=f'see what it waits for: {self.settings.command} -v true') from None
        if done.returncode != 0:
            raise openssh_error(_read(log) + done.stderr.decode(errors='replace'), self.settings, done.returncode)
        self.started = True

    def restart(self) -> None:
        """Replace a master that does not answer (its link dropped without a word)."""
        self.exit()
        self.ensure()

    def exit(self) -> None:
        """End the master now (its channels with it)."""
        if not self.own:
            return
        pid = self.master_pid()
        subprocess.run([*self.options(), '-O', 'exit', self.settings.alias], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)  # one that hangs on a dead link does not answer -O exit
        for leftover in (self.path, self.forward_path):
            with contextlib.suppress(OSError):
                os.unlink(leftover)

    def master_pid(self) -> int | None:
        if not self.own:
            return None
        done = subprocess.run([*self.options(), '-O', 'check', self.settings.alias], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=10)
        found = done.stderr.partition('(pid=')[2].partition(')')[0]
        return int(found) if found.isdigit() else None

    def lost(self) -> str | None:
        """Why the shared connection ended (None: it is there). Asked when a channel broke: the master may still be
        closing, so its log is read first, and its end waited for a moment."""
        said = [line for line in ssh_lines(_read(self.path + '.log')) if ENDED.search(line)]
        if not said and not wait_gone(self, 2):
            return None
        said = said or ssh_lines(_read(self.path + '.log'))
        s = self.settings
        timeout = next((line for line in said if line.startswith('Timeout, server')), None)
        if timeout:
            return (f'{s.hostname} port {s.port} has not answered for '
                    f'{s.alive_interval * (s.alive_count + 1):.0f} s: {s.alive_count} keepalives unanswered '
                    f'(ServerAliveInterval {s.alive_interval:g} s x ServerAliveCountMax {s.alive_count})')
        return said[-1] if said else f'the shared SSH connection to {s.hostname} port {s.port} ended'

    # --- the remote engine's socket, forwarded by the master ---------------------------------------------
    @property
    def forward_path(self) -> str:
        """Where the master forwards the remote engine's socket to ('' for a master that is not ours)."""
        return self.path + '.docker' if self.own and len(self.path) + 7 <= UNIX_PATH_MAX else ''

    def forwarded(self) -> bool:
        """Whether our master forwards the remote engine's socket (:meth:`forward_engine` made it; a new master
        starts without: its files are removed when it starts)."""
        return bool(self.forward_path) and os.path.exists(self.forward_path)

    def engine_socket(self) -> socket.socket:
        """A connection to the remote engine through the forwarded socket: one channel of the master."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.forward_path)
        except OSError:
            sock.close()
            raise ConnectionAbortedError(f'the shared SSH connection to {self.host} port {self.port} is gone') from None
        return sock

    def forward_engine(self) -> bool:
        """Make the master forward the remote engine's socket to :attr:`forward_path`, once per master: where the
        remote's docker CLI names a Unix socket, the forward is made and answers a ping; a refusal is remembered
        (``PATH.noforward``) until the master ends. Whether the forward is there."""
        if not self.forward_path:
            return False
        with self._lock():
            if self.forwarded():
                return True
            mark = self.path + '.noforward'
            master = _identity(self.path)
            if not master or _read(mark) == master:
                return False
            made = self._make_forward()
            if not made:
                with open(mark, 'w') as file:
                    file.write(master)
            return made

    def _make_forward(self) -> bool:
        said = self.run(ENGINE_ENDPOINT, timeout=30)
        words = said.stdout.split() if said.ok else []
        endpoint = next((w for w in reversed(words) if w.startswith('unix://')), '')
        if not endpoint:
            return False  # an engine on TCP or behind ssh://, or a docker CLI without contexts: channels
        spec = f'{self.forward_path}:{endpoint[len("unix://"):]}'
        done = subprocess.run([*self.options(), '-O', 'forward', '-L', spec, self.settings.alias],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        if done.returncode == 0 and self._engine_answers():
            return True
        self.drop_forward(spec)  # e.g. sshd's AllowStreamLocalForwarding no: each connection would be refused
        return False

    def _engine_answers(self) -> bool:
        """Whether the engine answers through the forward (a refused channel closes each connection at once)."""
        from tg_pipeline.compat.docker import FIRST_API_VERSION, docker_over_channels, negotiate
        client = docker_over_channels(self.engine_socket, FIRST_API_VERSION)
        try:
            negotiate(client, FORWARD_CHECK_S)
            return True
        except Exception:  # noqa: BLE001 - whatever it is, the channels serve instead
            return False
        finally:
            client.close()

    def drop_forward(self, spec: str = '') -> None:
        """Cancel the forward (``spec``: how it was made; else it is only forgotten here)."""
        if spec:
            subprocess.run([*self.options(), '-O', 'cancel', '-L', spec, self.settings.alias],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        with contextlib.suppress(OSError):
            os.unlink(self.forward_path)

    # --- channels -------------------------------------------------------------------------------------
    def channel(self, *remote: str, forward: str = '') -> ChannelSocket:
        """A socket to ``remote``'s stdin/stdout (or to ``forward``, ``host:port`` seen from the remote). Only on
        the shared connection: once it is gone, ssh would log in anew for each channel, and a run being watched
        must hear that its connection was lost (:meth:`lost` says why)."""
        if not self.alive():
            raise ConnectionAbortedError(f'the shared SSH connection to {self.host} port {self.port} is gone')
        ours, theirs = socket.socketpair()
        errors = tempfile.TemporaryFile()
        try:
            process = subprocess.Popen(self.command(*remote, forward=forward), stdin=theirs.fileno(),
                                       stdout=theirs.fileno(), stderr=errors,
                                       start_new_session=True)  # no Ctrl-C: we stop the run first
        except BaseException:
            ours.close()
            errors.close()
            raise
        finally:
            theirs.close()
        channel = ChannelSocket(ours, process, errors)
        self.last_channel = channel  # (for channel_failure) another thread's channel may be there by now:
        return channel  # what this call made is returned, never that attribute

    def forward_channel(self, address: str, port: int, origin=None) -> ChannelSocket:
        return self.channel(forward=f'{address}:{port}')

    def run(self, command: str, hide=True, warn=True, in_stream=False, timeout=None) -> Result:
        """``command`` on the remote over the shared connection (fabric's ``run`` signature; a ``timeout`` that
        passes raises ``subprocess.TimeoutExpired``, as fabric raises its CommandTimedOut)."""
        done = subprocess.run(self.command(command), stdin=subprocess.DEVNULL, capture_output=True,
                              start_new_session=True, timeout=timeout)
        stdout, stderr = done.stdout.decode(errors='replace'), done.stderr.decode(errors='replace')
        if done.returncode == 255:
            raise openssh_error(stderr, self.settings)
        return Result(done.returncode, stdout, stderr)

    def channel_failure(self) -> SSHError | None:
        """What the ssh program said when the last channel ended at once (None: it did not, or not that way)."""
        channel = self.last_channel
        if channel is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            channel.process.wait(timeout=1)
        if channel.process.returncode != 255:
            return None
        with contextlib.suppress(ValueError, OSError):
            channel.errors.seek(0)
            return openssh_error(channel.errors.read().decode(errors='replace'), self.settings)
        return None


LEFT_FOR_S = 7 * 86400  # the log and lock of a connection that ended are kept this long (a week)


def _tidy(folder: str) -> None:
    """Remove the logs and locks of shared connections that ended more than :data:`LEFT_FOR_S` ago."""
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            name, _, kind = entry.name.rpartition('.')
            if kind in ('log', 'lock', 'docker', 'noforward') and not os.path.exists(os.path.join(folder, name)):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > LEFT_FOR_S:
                        os.unlink(entry.path)


def _read(path: str) -> str:
    try:
        with open(path, errors='replace') as file:
            return file.read()
    except OSError:
        return ''


def _identity(path: str) -> str:
    """Which master listens on the control socket ``path`` (its inode and change time: a new master binds a new
    socket); '' when there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return ''
    return f'{found.st_ino}:{found.st_ctime_ns}'


def wait_gone(link: OpenSSH, timeout: float = 5) -> bool:
    """Whether the master went away within ``timeout`` s (for tests and for a restart)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not link.alive():
            return True
        time.sleep(0.05)
    return False


DOCKER_VERSION_COMMAND = "docker version --format '{{.Server.Version}}'"
FIRST_ANSWER_S = 10  # a master that gives no answer to the first request this long has lost its link: replaced
FORWARD_WAIT_S = 30  # what closing waits at most for the engine's forward being made (see OpenSSH.forward_engine)


class SharedRemote:
    """The remote engine through the shared connection: what :class:`tg_pipeline.ssh.connection.Remote` is for
    paramiko (``connection``, ``docker``, ``name``, ``lost()``, ``close()``), a context manager."""

    def __init__(self, target: RemoteTarget):
        self.target = target
        self.connection = OpenSSH(target, target.settings())
        self.connection.ensure()
        self._docker = None
        self._forwarding: threading.Thread | None = None  # making the engine's forward, beside the command's work

    @property
    def name(self) -> str:
        return f'{self.connection.user}@{self.connection.host}:{self.connection.port}'

    @property
    def docker(self):
        """The remote engine's API over the shared connection, checked by a first request: a master that does not
        answer it (a link dropped since) is replaced once; what stays wrong is said (no docker there, no
        permission, no engine, the ssh program's own words)."""
        if self._docker is None:
            self._docker = self._answering_client()
        return self._docker

    def _answering_client(self):
        from tg_pipeline.compat.docker import FIRST_API_VERSION, docker_over_channels, negotiate
        link = self.connection
        if link.forwarded():
            client = self._forwarded_client()
            if client is not None:
                return client
        for attempt in (1, 2):
            client = docker_over_channels(lambda: link.channel('docker', 'system', 'dial-stdio'),
                                          FIRST_API_VERSION)
            try:
                negotiate(client, FIRST_ANSWER_S if attempt == 1 else max(60, FIRST_ANSWER_S))
                self._forward_later()
                return client
            except Exception as e:  # noqa: BLE001 - named below
                client.close()
                failure = link.channel_failure()
                gone = link.own and not link.alive()  # e.g. a short ControlPersist ran out before this first request
                stale = failure is not None or gone or _timed_out(e)
                if attempt == 1 and link.own and stale and (gone or not link.started):
                    link.restart()  # without a word: the master was there, and is not usable any more
                    continue
                if failure is None and gone:
                    failure = SSHError(f'the shared SSH connection to {link.host} port {link.port} ended before '
                                       f'the first Docker request: {link.lost() or "its master is gone"}',
                                       hint='give it more time: control_persist in [remote] (seconds; e.g. 300)')
                raise failure or self._engine_problem(e) from None
        raise AssertionError('unreachable')

    def _forwarded_client(self):
        """A client on the forwarded engine socket that answered; None when it did not: the forward is forgotten
        (the channels serve; a master that gave no answer is replaced first)."""
        from tg_pipeline.compat.docker import FIRST_API_VERSION, docker_over_channels, negotiate
        link = self.connection
        client = docker_over_channels(link.engine_socket, FIRST_API_VERSION)
        try:
            negotiate(client, FIRST_ANSWER_S)
            return client
        except Exception as e:  # noqa: BLE001 - the channels are tried next, and say what is wrong
            client.close()
            if _timed_out(e):
                link.restart()  # (its link dropped without a word; a new master has no forward)
            else:
                link.drop_forward()
            return None

    def _forward_later(self) -> None:
        """Start making the engine's forward for the next commands (our master, kept after this one)."""
        link = self.connection
        if self._forwarding is None and link.own and self.target.control_persist > 0 and not link.forwarded():
            self._forwarding = threading.Thread(target=self._forward, name='tg-pipeline-forward', daemon=True)
            self._forwarding.start()

    def _forward(self) -> None:
        try:
            self.connection.forward_engine()
        except Exception:  # noqa: BLE001 - a forward only saves time: the channels work without it
            pass

    def _engine_problem(self, error: Exception):
        from tg_pipeline.errors import RemoteError
        from tg_pipeline.ssh.errors import docker_problem
        result = self.connection.run(DOCKER_VERSION_COMMAND)
        if result.exited != 0:
            return docker_problem(result, self.connection.user, self.connection.host, DOCKER_VERSION_COMMAND)
        return RemoteError(f'the Docker API of {self.connection.host} does not answer over SSH: {error}',
                           command='docker system dial-stdio',
                           hint='the remote needs a docker CLI that has `docker system dial-stdio` (Docker 18.09+)')

    def lost(self) -> str | None:
        return self.connection.lost()

    def close(self) -> None:
        if self._docker is not None:
            self._docker.close()
        if self._forwarding is not None:
            self._forwarding.join(timeout=FORWARD_WAIT_S)  # (made in tens of milliseconds; never left half made)
        if self.target.control_persist <= 0:
            self.connection.exit()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _timed_out(error: Exception) -> bool:
    text = f'{type(error).__name__}: {error}'.lower()
    return 'timeout' in text or 'timed out' in text

