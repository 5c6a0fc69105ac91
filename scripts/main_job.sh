#!/usr/bin/env bash
# The main job on a fresh machine. Until the ComfyUI nodes land (issue: node pack), it
# sets up the environment and runs the full-size UNet3D at the real VideoCrafter2 shape
# (16 frames, 320x512, batch 2 as under guidance) and prints time per call and peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m univg_core.bench unet --preset videocrafter2_t2v_512 --frames 16 --height 320 --width 512 "$@"
