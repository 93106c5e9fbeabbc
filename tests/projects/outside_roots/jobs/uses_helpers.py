"""Imports a module of the project root by its name."""
from helpers import shout


class Shout:
    def run(self):
        return shout('hello')
