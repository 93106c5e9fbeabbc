import json
import os

from .hold import pause


class EnvDumpJob:
    """Prints the values of the named variables as one JSON line (after an optional pause: jobs/hold.py)."""

    def __init__(self, names, seconds=0):
        self.names, self.seconds = list(names), seconds

    def run(self):
        print('started', flush=True)
        pause(self.seconds)
        print('ENVDUMP ' + json.dumps({n: os.environ.get(n) for n in self.names}), flush=True)
