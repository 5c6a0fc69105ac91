"""UniVG for ComfyUI: unified text/image-to-video generation (base, animation, super-resolution).

ComfyUI imports this package from custom_nodes/. The nodes live in `nodes/`, a thin
adapter over the pure-PyTorch `univg_core/`.
"""

import importlib.util

if importlib.util.find_spec("comfy") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # imported outside a ComfyUI host (e.g. by pytest as the rootdir package): nothing to register
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
