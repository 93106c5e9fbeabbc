"""Fixtures of the fast tier: a fake Docker engine (override ``engine`` to program it) and a real docker-py
client talking to it."""
import pytest

from fake_engine import FakeEngine


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def client(engine):
    return engine.client()
