#!/usr/bin/env bash
# Set up (idempotent), then run the benchmark; extra arguments go to bench.py (e.g. --runs 7).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# the heavy job's packages (rows (m), bench/heavy.py): built here once when pipeline.toml's job changes
.venv/bin/python -m pip install -q --disable-pip-version-check scikit-learn scipy
bash scripts/setup_docker.sh
bash scripts/setup_remote.sh
bash scripts/setup_swarm.sh
bash scripts/setup_swarm_remote.sh
exec .venv/bin/python bench/bench.py "$@"
