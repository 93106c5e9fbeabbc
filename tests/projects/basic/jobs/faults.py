"""Jobs for the fault tests: a checkpoint before a long sleep, an exit status from the environment,
bytes no decoder would keep, and large output, output folders and return values."""
import os
import sys

# One valid line longer than the engine's 16 KiB log frames, cut into several of them
LONG_LINE = bytes(range(32, 127)) * 400 + b'\n'


def raw_payload(stream: str) -> bytes:
    """What RawBytes writes to ``stream`` ('stdout' or 'stderr'): invalid UTF-8, multi-byte characters,
    carriage returns, NUL bytes, a long line, and no line end at the very end."""
    return (f'{stream} begins\n'.encode() + b'invalid \xff\xfe\xc3( utf-8\n'
            + 'multi-byte: \u00e9 \u20ac \U0001f600 \u65e5\u672c\n'.encode()
            + b'progress 10%\rprogress 50%\rprogress 100%\r\n' + b'nul \x00 bytes \x00\x00 here\n'
            + LONG_LINE + b'\xe2\x82' + b'\xac cut across writes\n' + b'last line without end')


class Checkpoint:
    """Writes a checkpoint into its output folder, then sleeps (jobs/hold.py): what an interrupted run must keep."""

    def __init__(self, seconds=60):
        self.seconds = seconds

    def run(self):
        with open(os.path.join(os.environ['TG_PIPELINE_OUTPUT'], 'checkpoint.txt'), 'w') as file:
            file.write('epoch 1 done\n')
        print('checkpoint written', flush=True)
        from .hold import pause  # not at the top: tests/integration/test_faults.py loads this file alone
        pause(self.seconds)
        return 'finished'


class ExitWith:
    """Ends as ``EXIT_WITH`` says: a number (``sys.exit(N)``), 'none' (``sys.exit()``) or 'return'."""

    def run(self):
        how = os.environ.get('EXIT_WITH', 'return')
        print(f'exiting with {how}', flush=True)
        if how == 'return':
            return 'returned'
        sys.exit(None if how == 'none' else int(how))


class RawBytes:
    """Writes :func:`raw_payload` to stdout and stderr, in several writes, as bytes."""

    def run(self):
        for name in ('stdout', 'stderr'):
            stream = getattr(sys, name).buffer
            data = raw_payload(name)
            cut = data.index(b'\xe2\x82') + 2  # a character split between two writes
            for part in (data[:cut], data[cut:]):
                stream.write(part)
                stream.flush()
        return 'raw'


class Prints:
    """Prints ``megabytes`` MB to stdout in lines of 1000 bytes, written 1 MB at a time."""

    def __init__(self, megabytes):
        self.megabytes = megabytes

    def run(self):
        block = (b'x' * 999 + b'\n') * 1048
        for _ in range(self.megabytes):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
        return len(block) * self.megabytes


class WritesOutput:
    """Writes ``megabytes`` MB of random bytes into its output folder (8 files)."""

    def __init__(self, megabytes):
        self.megabytes = megabytes

    def run(self):
        folder = os.environ['TG_PIPELINE_OUTPUT']
        for index in range(8):
            with open(os.path.join(folder, f'part_{index}.bin'), 'wb') as file:
                for _ in range(self.megabytes // 8):
                    file.write(os.urandom(1 << 20))
        return self.megabytes


class ReturnsBig:
    """Returns a list of ``megabytes`` random 1 MB blocks."""

    def __init__(self, megabytes):
        self.megabytes = megabytes

    def run(self):
        return [os.urandom(1 << 20) for _ in range(self.megabytes)]


class ReturnsUnpicklable:
    """Returns what no pickle takes: a generator (``kind='generator'``) or a threading.Lock (``'lock'``)."""

    def __init__(self, kind='generator'):
        self.kind = kind

    def run(self):
        import threading
        print(f'returning a {self.kind}', flush=True)
        return (i for i in range(3)) if self.kind == 'generator' else threading.Lock()
