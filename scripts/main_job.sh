#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv and the ComfyUI host, start it headless
# with this pack, render a bundled workflow (default: text_to_video) and print the file.
# Uses the checkpoint in models/univg/; without one it explains where to put it and renders
# with a random-weight demo checkpoint. Options: python -m tools.main_job --help
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build_host.sh
exec .venv/bin/python -m tools.main_job "$@"
