"""One variant of a sweep: returns its parameters and score, writes its output file; may fail on purpose."""
import os

from .hold import pause


class Train:
    def __init__(self, rate, width, fail_at=None, seconds=0):
        self.rate, self.width, self.fail_at, self.seconds = rate, width, fail_at, seconds

    def run(self):
        print('training', self.rate, self.width, 'on', os.uname().nodename, flush=True)
        pause(self.seconds)
        if (self.rate, self.width) == tuple(self.fail_at or ()):
            raise ValueError(f'diverged at rate={self.rate} width={self.width}')
        with open(os.path.join(os.environ['TG_PIPELINE_OUTPUT'], 'score.txt'), 'w') as file:
            file.write(str(self.rate * self.width))
        return {'rate': self.rate, 'width': self.width, 'score': self.rate * self.width}
