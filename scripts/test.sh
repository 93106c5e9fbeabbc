#!/usr/bin/env bash
# Set up everything the tests need (idempotent), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup_docker.sh
bash scripts/setup_remote.sh
bash scripts/setup_swarm.sh
bash scripts/setup_swarm_remote.sh
exec .venv/bin/python -m pytest -ra "$@"
