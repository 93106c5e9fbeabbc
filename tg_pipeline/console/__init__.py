"""What a person sees while steps run: the :class:`Console` every printing function takes (where lines go,
quiet or verbose, :mod:`.console`), one updating progress line per long operation and the notes a step
leaves (:mod:`.progress`), amounts and durations (:mod:`.units`)."""
from tg_pipeline.console.console import CONSOLE, Console

__all__ = ['CONSOLE', 'Console']
