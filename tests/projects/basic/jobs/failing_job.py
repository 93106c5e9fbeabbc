"""A job that fails on purpose: shows how failures come back (traceback, exit code)."""


class FailingJob:
    def __init__(self, message='this job fails on purpose'):
        self.message = message

    def run(self):
        raise RuntimeError(self.message)
