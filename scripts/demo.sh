#!/usr/bin/env bash
# Set up (idempotent), then run ExampleJob attached, on the local engine, and on the simulated remote host;
# then ExampleSweep on the two-node swarm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup_docker.sh
bash scripts/setup_remote.sh
bash scripts/setup_swarm.sh
export EXAMPLE_VARIABLE=TEST
step() { printf '\n=== %s ===\n' "$*"; }
step 'attached: in this process';        .venv/bin/doit run_attached job=ExampleJob
step 'local: on the local Docker engine'; .venv/bin/doit run_local job=ExampleJob
step 'remote: on the Docker host behind ssh tg-remote'; .venv/bin/doit run_remote job=ExampleJob
step 'swarm: a 4-variant sweep on the two-node swarm (this engine + the remote one)'; .venv/bin/doit run_swarm job=ExampleSweep
