"""The container side of tg_pipeline: the job package's entry point and the names both sides share.

Standard library only. Copied byte for byte into every job package as ``MODULE._tg_runtime``
(:mod:`.protocol`, :mod:`.entry`), and importable here as ``tg_pipeline.runtime`` by the host.
"""
