import datetime

from .helper import square


class BenchJob:
    def __init__(self, n):
        self.n = n

    def run(self):
        print(f'{datetime.datetime.now()} INFO: first line of the job', flush=True)
        return square(self.n)
