"""A module that fails while it is imported."""
SETTINGS = {'epochs': 3}
EPOCHS = SETTINGS['epoch']


class Job:
    def run(self):
        return EPOCHS
