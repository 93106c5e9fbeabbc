"""What a person sees while steps run: one updating progress line per long operation and the notes a step
leaves (:mod:`.progress`), amounts and durations (:mod:`.units`)."""
