"""A module in the project root, next to jobs/: not a source root."""


def shout(text):
    return text.upper() + '!'
