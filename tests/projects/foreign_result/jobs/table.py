"""Returns a tabulate.Line: a class of a package installed in the image only."""


class Table:
    def run(self):
        import tabulate  # in the image (dependencies), not necessarily here
        return tabulate.Line('+', '-', '+', '+')



class NumpyValue:
    """Returns a numpy integer: numpy is a dependency of this job's image only."""

    def run(self):
        import numpy
        return numpy.int64(7)
