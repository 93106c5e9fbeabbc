"""The example job: reports which environment variables reached it.

Standard library only, and pickled by value (see serialize.BY_VALUE): it runs
in any image without tg_pipeline installed there.
"""
import datetime
import os


def log(message):
    print(f'{datetime.datetime.now()} INFO: {message}', flush=True)


class ExampleJob:
    def __init__(self, variables):
        self.variables = list(variables)

    def run(self):
        for name in self.variables:
            log(f'Variable {name} is found: {name in os.environ}')
        log('SUCCESS')
