"""A subpackage's module importing its sibling package's module by absolute name."""
from jobs.util import shout


def banner(text):
    return f'== {shout(text)} =='
