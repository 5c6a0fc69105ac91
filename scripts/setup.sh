#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with CPU torch and the
# pack's dependencies. Idempotent; safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -d /opt/wheels ] && export PIP_FIND_LINKS="${PIP_FIND_LINKS:-/opt/wheels}"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
mkdir -p .cache
echo "torch==${TORCH_VERSION}" > .cache/constraints.txt
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '${TORCH_VERSION}')" 2>/dev/null; then
    .venv/bin/pip install -q "torch==${TORCH_VERSION}"
fi
.venv/bin/pip install -q -c .cache/constraints.txt -r requirements.txt -r requirements-dev.txt
# open_clip imports torchvision, whose registry wheels are CUDA-linked: without this glue (see the
# file) every command that tokenises a caption (training, the studies) fails on import here
SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp scripts/host/univg_host_glue.py "$SITE/univg_host_glue.py"
echo "import univg_host_glue" > "$SITE/univg_host_glue.pth"
.venv/bin/python -c "import open_clip"
