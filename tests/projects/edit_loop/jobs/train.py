"""A job as ML code is written: its module does work at import time (here: it says who imported it, where
IMPORT_LOG points; in a real job, `import torch`). Fixture of tests/integration/test_edit_loop.py."""
import os
import sys

from jobs.hold import pause

if os.environ.get('IMPORT_LOG'):  # set for the doit process by the test; never in the container
    with open(os.environ['IMPORT_LOG'], 'a') as log:
        log.write(f'imported by {os.path.basename(sys.argv[0])} {os.getpid()}\n')


def helper(rate):
    return rate * 2


class Train:
    def __init__(self, rate=0.1, fail=False):
        self.rate, self.fail = rate, fail

    def run(self):
        print(f'training at rate {helper(self.rate)}', flush=True)
        output = os.environ['TG_PIPELINE_OUTPUT']  # every kind of run gets its output folder
        with open(os.path.join(output, 'model.txt'), 'w') as model:
            model.write(f'rate={self.rate}\n')
        pause()
        if self.fail:
            raise ValueError(f'the loss diverged at rate {self.rate}')
        return {'rate': self.rate}
