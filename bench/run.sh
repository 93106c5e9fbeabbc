#!/usr/bin/env bash
# Set up (idempotent), then run the benchmark; extra arguments go to bench.py (e.g. --runs 7).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup_docker.sh
bash scripts/setup_remote.sh
bash scripts/setup_swarm.sh
bash scripts/setup_swarm_remote.sh
# The bench runs in an environment of its own (.venv-bench): the heavy job's packages (rows (o), bench/heavy.py),
# which its pipeline.toml job is built with once when it is new, stay out of the tests' .venv.
[ -x .venv-bench/bin/python ] || "${PYTHON:-python3}" -m venv .venv-bench
stamp=.venv-bench/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv-bench/bin/python -m pip install -q --disable-pip-version-check -e . scikit-learn scipy
    rm -f .venv-bench/.installed-*; touch "$stamp"
fi
exec .venv-bench/bin/python bench/bench.py "$@"
