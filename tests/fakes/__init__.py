"""Fakes for the fast tier (tests/unit): a stateful in-memory Docker engine under the real docker-py client
(:mod:`fakes.engine`, with its endpoints in :mod:`fakes.containers`, :mod:`fakes.images`, :mod:`fakes.swarm`,
:mod:`fakes.volumes`, its state in :mod:`fakes.state` and its transport in :mod:`fakes.wire`), and the run
helpers over it (:mod:`fakes.runs`).

Imported as ``from fakes.engine import FakeEngine``: tests/ is on ``sys.path`` (pytest puts it there for
tests/conftest.py, tests/ being no package itself).
"""
