"""UniVG Example Image: the pack's example images as an IMAGE, so the bundled workflows run
without copying a file into ComfyUI's input folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "workflows"


def example_names() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.png"))


class UniVGExampleImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": (example_names(), {
                    "tooltip": "an image shipped with the pack: univg_mini_example.png is a red circle on the dark "
                               "background of UniVG Mini's world (64x64), the first frame its workflows animate; "
                               "univg_mini_example_last.png the same circle further right, the last frame its "
                               "interpolation workflows end on"}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("the image as a batch of one frame (RGB, 0-1)",)
    FUNCTION = "load"
    CATEGORY = "UniVG"
    DESCRIPTION = ("Loads one of the UniVG pack's example images (no copy into ComfyUI's input folder needed); "
                   "use core Load Image for your own pictures.")
    SEARCH_ALIASES = ["example image", "sample image", "UniVG Mini image"]

    def load(self, image: str):
        if image not in example_names():
            raise ValueError(f"UniVG Example Image: {image!r} is not one of the pack's examples {example_names()} "
                             f"(in {EXAMPLES}); use core Load Image for other pictures")
        with Image.open(EXAMPLES / image) as picture:
            pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
        return (torch.from_numpy(pixels)[None],)
