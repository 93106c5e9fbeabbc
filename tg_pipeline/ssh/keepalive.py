"""Dead SSH connections detected the way OpenSSH's ServerAliveInterval / ServerAliveCountMax do it.

A partition that drops packets without a reset leaves TCP waiting for many minutes, and a Docker log
stream reads with no timeout (a job may be silent for hours). The :class:`Watchdog` of a connection
notes when the server last sent anything; after ``interval`` seconds of silence it sends a keepalive
request that the server must answer, and one more after each further ``interval``; when ``count`` of them
went unanswered (``(count + 1) * interval`` seconds of silence, as in OpenSSH) it records why and shuts the
connection, so whatever waits on it ends at once and says the connection was lost.

paramiko's own ``set_keepalive`` sends keepalives that ask for no reply and never counts: it keeps a
dead connection open forever.
"""
from __future__ import annotations

import socket
import threading
import time

from tg_pipeline.compat.paramiko import keepalive_request, track_received


class Watchdog:
    def __init__(self, transport, interval: float, count: int, name: str):
        self.transport, self.interval, self.count, self.name = transport, float(interval), int(count), name
        self.reason: str | None = None
        self.last = time.monotonic()
        self._stop = threading.Event()
        track_received(transport, self._heard)
        self._thread = threading.Thread(target=self._watch, name=f'ssh-keepalive {name}', daemon=True)
        self._thread.start()

    def _heard(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        sent, heard = 0, self.last
        while not self._stop.wait(min(1.0, self.interval / 4)):
            if not self.transport.is_active():
                return
            if self.last != heard:
                sent, heard = 0, self.last
            due = int((time.monotonic() - heard) // self.interval)  # keepalives owed since the server spoke
            if due > self.count:
                self._dead(time.monotonic() - heard)
                return
            if due > sent:
                sent = due
                threading.Thread(target=self._send, daemon=True).start()  # a full send buffer may block it

    def _send(self) -> None:
        try:
            keepalive_request(self.transport)
        except Exception:  # noqa: BLE001 - the connection is going anyway; the watchdog counts on
            pass

    def _dead(self, silent: float) -> None:
        self.reason = (f'{self.name} has not answered for {silent:.0f} s: {self.count} keepalives unanswered '
                       f'(ServerAliveInterval {self.interval:g} s x ServerAliveCountMax {self.count})')
        sock = getattr(self.transport, 'sock', None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)  # wakes every reader and writer of the socket now
        except (AttributeError, OSError):
            pass
        self.transport.close()

    def stop(self) -> None:
        self._stop.set()
