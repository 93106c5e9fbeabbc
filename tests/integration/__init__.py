"""The integration tier: real Docker engines, the simulated remote over SSH, the registry, swarms, pip installs,
many doit processes at once (its fixtures: integration/conftest.py)."""
