class Scaled:
    def __init__(self, transform):
        self.transform = transform

    def run(self):
        return self.transform(14)


def make(factor):
    return Scaled(lambda x: x * factor)
