"""Where a run's output goes while it streams: log files (raw bytes, exactly as the job wrote them),
the console (decoded leniently; nothing when it is quiet), and a bounded tail kept for error messages."""
from __future__ import annotations

import codecs
from typing import IO

from tg_pipeline.console import CONSOLE, Console

TAIL_BYTES = 64 * 1024


class OutputSink:
    def __init__(self, paths=None, run_id: str = '', console: Console = CONSOLE, prefix: str = ''):
        self.console, self.prefix = console, prefix
        self.decoders = [codecs.getincrementaldecoder('utf-8')('replace') for _ in range(2)]
        self.tail = bytearray()
        self.files: tuple[IO[bytes] | None, IO[bytes] | None] = (None, None)  # stdout's and stderr's copies
        if paths is not None and run_id:
            paths.dir.mkdir(parents=True, exist_ok=True)
            self.files = (open(paths.out(run_id), 'wb'), open(paths.err(run_id), 'wb'))

    def write(self, stream: int, data: bytes) -> None:
        """``stream`` 1: stdout, 2: stderr."""
        if not data:
            return
        index = 0 if stream == 1 else 1
        self.tail += data
        del self.tail[:-TAIL_BYTES]
        file = self.files[index]
        if file:
            file.write(data)
            file.flush()
        if not self.console.quiet:
            self.console.write(self.decoders[index].decode(data), err=index == 1)

    def text(self) -> str:
        return self.tail.decode('utf-8', 'replace')

    def close(self) -> None:
        for index, decoder in enumerate(self.decoders):  # a character cut short at the end shows as U+FFFD
            self.console.write(decoder.decode(b'', final=True), err=index == 1)
        for file in self.files:
            if file:
                file.close()
        self.files = (None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
