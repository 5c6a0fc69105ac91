"""Pixels for the CLIP vision tower: the two ways an image becomes its 224x224 input.

- "original": what DynamiCrafter and VideoCrafter1-I2V do (FrozenOpenCLIPImageEmbedderV2):
  the image in [-1, 1] is resized to 224x224 by kornia (Gaussian antialias, then bicubic with
  align_corners=True), no crop, no 8-bit rounding, mapped back to [0, 1], CLIP mean/std.
  Their null image is that embedder applied to zeros in [-1, 1]: exactly 0.5 grey.
- "comfyui": ComfyUI's clip_preprocess without crop: torch's antialiased bicubic with
  half-pixel sampling, then rounding to 8 bits, CLIP mean/std.

The two give tokens about 5-8% apart for the same image; real checkpoints were trained on
the original path.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSING = ("original", "comfyui")
NULL_IMAGE_LEVEL = 0.5  # the original's zeros in [-1, 1]
NULL_IMAGE_SIZE = 224


def _resize_original(images: torch.Tensor, size: int) -> torch.Tensor:
    from kornia.geometry.transform import resize

    signed = images * 2 - 1
    resized = resize(signed, (size, size), interpolation="bicubic", align_corners=True, antialias=True)
    return (resized + 1) / 2


def _resize_comfyui(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True)
    return (images * 255).clamp(0, 255).round() / 255


def clip_pixels(
    images: torch.Tensor,
    preprocess: str = "original",
    size: int = 224,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """[N, 3, H, W] images in [0, 1], any size -> [N, 3, size, size] normalised vision-tower input (float32)."""
    if preprocess not in PREPROCESSING:
        raise ValueError(f"CLIP image preprocessing must be one of {PREPROCESSING}, got {preprocess!r}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {list(images.shape)}")
    images = images.float()
    resized = _resize_original(images, size) if preprocess == "original" else _resize_comfyui(images, size)
    mean_t = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (resized - mean_t) / std_t


def null_image(size: int = NULL_IMAGE_SIZE) -> torch.Tensor:
    """The null image of image guidance, [1, 3, size, size] in [0, 1] (mid grey)."""
    return torch.full((1, 3, size, size), NULL_IMAGE_LEVEL, dtype=torch.float32)
