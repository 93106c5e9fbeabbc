#!/usr/bin/env bash
# Set up everything the tests need (idempotent), then run the whole suite.
#   --fast: the virtual environment only (no Docker, no remote, no swarm), then the fast tier (tests/unit).
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --fast ]; then
    shift
    bash scripts/install.sh
    exec .venv/bin/python -m pytest -ra tests/unit "$@"
fi
bash scripts/install.sh
bash scripts/setup_docker.sh
bash scripts/setup_remote.sh
bash scripts/setup_swarm.sh
bash scripts/setup_swarm_remote.sh
exec .venv/bin/python -m pytest -ra "$@"
