import time


class SleepJob:
    def __init__(self, seconds):
        self.seconds = seconds

    def run(self):
        print('sleeping', self.seconds, flush=True)
        time.sleep(self.seconds)
        print('slept', flush=True)
