"""One variant of a sweep that reports the GPUs its container was given (NVIDIA_VISIBLE_DEVICES, which Docker's
NVIDIA driver sets to the device ids of the run), holds while the test looks (hold.py), and returns them."""
import os

from .hold import pause


class GpuJob:
    def __init__(self, seed=0, fail_at=None):
        self.seed, self.fail_at = seed, fail_at

    def run(self):
        gpus = os.environ.get('NVIDIA_VISIBLE_DEVICES', '')
        print(f'seed {self.seed} on GPUs [{gpus}]', flush=True)
        pause()
        if self.seed == self.fail_at:
            raise ValueError(f'seed {self.seed} diverged')
        return {'seed': self.seed, 'gpus': gpus}
