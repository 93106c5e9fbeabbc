"""Imports a package of the project root by its name."""
from lib.text import title


class Title:
    def __init__(self, text):
        self.text = text

    def run(self):
        return title(self.text)
