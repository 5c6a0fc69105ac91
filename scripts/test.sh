#!/usr/bin/env bash
# Set up the environment and run the test suite (CPU only, tiny models): the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
