"""A factory that forgets to build the job and returns its settings."""


def make(epochs):
    return {'epochs': epochs, 'rate': 0.1}
