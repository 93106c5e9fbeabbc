#!/usr/bin/env bash
# Set up (idempotent), then run the benchmark; extra arguments go to bench.py (e.g. --runs 7).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup_docker.sh
bash scripts/setup_remote.sh
bash scripts/setup_swarm.sh
bash scripts/setup_swarm_remote.sh
exec .venv/bin/python bench/bench.py "$@"
