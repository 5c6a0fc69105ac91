"""UniVG for ComfyUI: unified text/image-to-video generation (base, animation, super-resolution).

ComfyUI imports this package from custom_nodes/. The nodes live in `nodes/`, a thin
adapter over the pure-PyTorch `univg_core/`.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
