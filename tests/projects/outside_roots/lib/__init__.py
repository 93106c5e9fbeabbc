"""A package in the project root, next to jobs/: a source root only when listed in source_roots."""
