import json
import os
import time


class EnvDumpJob:
    """Prints the values of the named variables as one JSON line (after an optional pause)."""

    def __init__(self, names, seconds=0):
        self.names, self.seconds = list(names), seconds

    def run(self):
        print('started', flush=True)
        time.sleep(self.seconds)
        print('ENVDUMP ' + json.dumps({n: os.environ.get(n) for n in self.names}), flush=True)
