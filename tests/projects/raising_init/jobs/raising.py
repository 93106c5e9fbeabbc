"""A job whose __init__ refuses its argument, through a helper of its own."""


def checked_rate(rate):
    if rate <= 0:
        raise ValueError(f'rate must be positive, not {rate}')
    return rate


class Trainer:
    def __init__(self, rate):
        self.rate = checked_rate(rate)

    def run(self):
        return self.rate
