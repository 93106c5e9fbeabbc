from .hold import pause


class SleepJob:
    def __init__(self, seconds):
        self.seconds = seconds

    def run(self):
        print('sleeping', self.seconds, flush=True)
        pause(self.seconds)
        print('slept', flush=True)
