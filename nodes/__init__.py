"""ComfyUI node classes (V1 API). Registered by the package's __init__.py."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
