"""Live latent previews: the RGB factors ComfyUI's Latent2RGB previewer applies to a
model-space latent, and a sampler callback that sends a preview with each progress step."""

from __future__ import annotations

from typing import Optional

import latent_preview

import comfy.utils

from ..univg_core.configs import ModelConfig
from ..univg_core.mini.preview import MINI_LATENT_RGB_BIAS, MINI_LATENT_RGB_FACTORS, MINI_SCALE_FACTOR
from .progress import check_interrupt

SD_SCALE_FACTOR = 0.18215
# the SD 1.x / 2.x KL VAE (every lvdm checkpoint's), as ComfyUI previews SD 1.5
SD_LATENT_RGB_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]


def latent_rgb_for(config: ModelConfig) -> tuple[Optional[list], Optional[list]]:
    """(factors: per latent channel its R, G, B contribution; bias per colour), or Nones for
    a VAE we have no factors for (then ComfyUI shows no Latent2RGB preview)."""
    if config.unet.out_channels != 4:
        return None, None
    if config.schedule.scale_factor == SD_SCALE_FACTOR:
        return SD_LATENT_RGB_FACTORS, None
    if config.schedule.scale_factor == MINI_SCALE_FACTOR:
        return MINI_LATENT_RGB_FACTORS, MINI_LATENT_RGB_BIAS
    return None, None


def preview_progress(patcher, total: int):
    """A univg_core sampler callback (step, steps, x, x0): ComfyUI's progress bar with a
    preview of frame 0 of the current clean-sample estimate, and the interrupt check."""
    previewer = latent_preview.get_previewer(patcher.load_device, patcher.model.latent_format)
    bar = comfy.utils.ProgressBar(total)

    def callback(step: int, steps: int, x, x0) -> None:
        check_interrupt()
        preview = None
        if previewer is not None:
            first_frame = x0[:, :, 0].float()  # [1, C, T, h, w] model space -> [1, C, h, w]
            preview = previewer.decode_latent_to_preview_image("JPEG", first_frame)
        bar.update_absolute(step + 1, steps, preview)

    return callback
