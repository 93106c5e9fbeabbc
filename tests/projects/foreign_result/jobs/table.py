"""Returns a tabulate.Line: a class of a package installed in the image only."""


class Table:
    def run(self):
        import tabulate  # in the image (dependencies), not necessarily here
        return tabulate.Line('+', '-', '+', '+')
