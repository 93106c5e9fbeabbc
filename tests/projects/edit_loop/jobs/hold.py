"""For the tests: a run that must still be going while a test looks at it waits for the test, never for a time.

``hold.env`` beside pipeline.toml sets TG_TEST_HOLD to a file in the container; a test runs the job with
``env_files=hold.env`` and, when it is done looking, creates that file in the container (``release`` in
tests/integration/conftest.py). Without it the job sleeps as it always did.
"""
import os
import time

HOLD = 'TG_TEST_HOLD'
LIMIT_S = 900  # a held run whose test failed before releasing it still ends, by itself, after this


def pause(seconds=0.0):
    """Sleep ``seconds``; in a held run, wait until the file TG_TEST_HOLD names exists instead."""
    release = os.environ.get(HOLD)
    if not release:
        time.sleep(seconds)
        return
    print('held until', release, 'exists', flush=True)
    deadline = time.monotonic() + LIMIT_S
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.1)
