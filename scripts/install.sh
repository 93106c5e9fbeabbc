#!/usr/bin/env bash
# Idempotent: a virtual environment in .venv with tg_pipeline (editable), its test tools and the docs' (mkdocs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,docs]' 2>&1 \
        | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    rm -f .venv/.installed-*; touch "$stamp"
fi
