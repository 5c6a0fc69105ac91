"""Render UniVG Mini videos with the core pipeline alone (no ComfyUI): the evaluation and the
tests score what the trained models do with these, and the nodes render the same maths
through ComfyUI's loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors.torch import load_file

from ..checkpoints import load_checkpoint
from ..diffusion import pipelines
from ..diffusion.guidance import Condition, make_guided_denoiser, unet_model_fn
from ..diffusion.schedule import alphas_cumprod_for
from ..training.clip_towers import load_text_tower, tokenize
from .tiny_vae import TinyVAE


def load_mini_vae(path: str | Path) -> TinyVAE:
    vae = TinyVAE()
    vae.load_state_dict({key: value.float() for key, value in load_file(str(path)).items()})
    return vae.eval().requires_grad_(False)


class MiniTextToVideo:
    """F_B text-to-video: `render(caption, seed)` -> uint8 frames [T, H, W, 3]."""

    def __init__(self, base: str | Path, text_encoder: str | Path, vae: str | Path):
        self.model = load_checkpoint(base, dtype=torch.float32, device="cpu")
        text_state = {"model." + key: value for key, value in load_file(str(text_encoder)).items()}
        self.text = load_text_tower(text_state)
        self.vae = load_mini_vae(vae)
        self.alphas_cumprod = alphas_cumprod_for(self.model.config.schedule)
        self._tokens: dict[str, torch.Tensor] = {}

    def tokens(self, caption: str) -> torch.Tensor:
        if caption not in self._tokens:
            with torch.no_grad():
                self._tokens[caption] = self.text(tokenize([caption]))
        return self._tokens[caption]

    @torch.no_grad()
    def latents(self, caption: str, seed: int, frames: int = 8, size: int = 64, steps: int = 25,
                text_weight: float = 7.5, negative: str = "", fps: Optional[int] = None) -> torch.Tensor:
        config = self.model.config
        conditions = {"null": Condition(self.tokens(negative)), "text": Condition(self.tokens(caption))}
        model_fn = unet_model_fn(self.model.unet, fs=fps or config.unet.default_fs)
        denoise = make_guided_denoiser(model_fn, "multi", conditions, w_text=text_weight, w_image=0.0,
                                       guidance_rescale=config.guidance_rescale)
        shape = (1, config.unet.in_channels, frames, size // 8, size // 8)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        return pipelines.generate(denoise, shape, self.alphas_cumprod, config.prediction, steps=steps, sampler="ddim",
                                  spacing=config.schedule.timestep_spacing, initial_noise=noise)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """[1, C, T, h, w] model latents -> uint8 [T, H, W, 3]."""
        frames = latents[0].transpose(0, 1) / self.model.config.schedule.scale_factor
        pixels = self.vae.decode(frames).clamp(0, 1)
        return (pixels.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()

    def render(self, caption: str, seed: int, **options) -> np.ndarray:
        return self.decode(self.latents(caption, seed, **options))
