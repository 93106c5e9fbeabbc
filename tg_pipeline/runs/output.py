"""Where a run's output goes while it streams: log files (raw bytes, exactly as the job wrote them),
the terminal (decoded leniently, unless silent), and a bounded tail kept for error messages."""
from __future__ import annotations

import codecs
import sys

TAIL_BYTES = 64 * 1024


class OutputSink:
    def __init__(self, paths=None, run_id: str = '', silent: bool = False, out=None, err=None, prefix: str = ''):
        self.silent, self.prefix = silent, prefix
        self.targets = (out or sys.stdout, err or sys.stderr)
        self.decoders = [codecs.getincrementaldecoder('utf-8')('replace') for _ in range(2)]
        self.tail = bytearray()
        self.files = (None, None)
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
        if not self.silent:
            text = self.decoders[index].decode(data)
            if text:
                self.targets[index].write(text)
                self.targets[index].flush()

    def text(self) -> str:
        return self.tail.decode('utf-8', 'replace')

    def close(self) -> None:
        for index, decoder in enumerate(self.decoders):  # a character cut short at the end shows as U+FFFD
            text = decoder.decode(b'', final=True)
            if text and not self.silent:
                self.targets[index].write(text)
                self.targets[index].flush()
        for file in self.files:
            if file:
                file.close()
        self.files = (None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
