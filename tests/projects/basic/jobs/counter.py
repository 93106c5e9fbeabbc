"""Prints numbered lines slowly: a run to detach from, lose the connection to, and re-attach to (held at its end
until the test releases it: jobs/hold.py)."""
import time

from .hold import pause


class Counter:
    def __init__(self, lines, every=0.5):
        self.lines, self.every = lines, every

    def run(self):
        for i in range(self.lines):
            print(f'line {i}', flush=True)
            time.sleep(self.every)
        pause()
        return self.lines
