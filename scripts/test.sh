#!/usr/bin/env bash
# The README's test command: set up .venv (CPU torch), build the real ComfyUI hosts the
# host tests drive (.host/, ignored), and run the whole suite on the CPU.
# With no arguments it runs in two processes: the suite, then the two-host tests
# (tests/test_host_versions.py), which start ComfyUI servers and a second in-process suite
# of their own and need the memory the first process's in-process host holds (24 GB machines).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build_host.sh
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest --ignore=tests/test_host_versions.py
exec .venv/bin/python -m pytest tests/test_host_versions.py
