"""The example job of pipeline.toml: reports which environment variables reached it (standard library only).

It is the job itself, not an import of tg_pipeline's own ExampleJob: a job of pipeline.toml travels as its
reference, and the container imports its factory's module, where tg_pipeline is not installed."""
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
