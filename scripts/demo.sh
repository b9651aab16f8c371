#!/usr/bin/env bash
# The one set-up-and-run command: creates .venv if needed, installs evb, runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/evb-demo "$@"
