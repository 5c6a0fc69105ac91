#!/usr/bin/env bash
# The README's test command: set up .venv (CPU torch), build the real ComfyUI host the
# host tests drive (.host/, ignored), and run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build_host.sh
exec .venv/bin/python -m pytest "$@"
