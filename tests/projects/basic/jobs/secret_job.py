"""A job that needs a secret: it proves it saw the value (its sha256 and length) without ever printing it."""
import hashlib
import os

from .hold import pause


class UsesSecret:
    def __init__(self, name='SECRET_TOKEN', seconds=0):
        self.name, self.seconds = name, seconds

    def run(self):
        value = os.environ.get(self.name)
        print('secret present:', value is not None, flush=True)
        pause(self.seconds)
        return {'sha256': hashlib.sha256(value.encode()).hexdigest() if value is not None else None,
                'length': len(value) if value is not None else None}
