"""The Mini's RGB preview factors: the shipped constants are the fit, and they show a frame's colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from univg_core.mini.preview import (MINI_LATENT_RGB_BIAS, MINI_LATENT_RGB_FACTORS, MINI_SCALE_FACTOR,
                                     fit_latent_rgb_factors)
from univg_core.mini.models import VAE_FILE
from univg_core.models.tiny_vae import load_tiny_vae
from univg_core.mini.world import BACKGROUNDS, example_image, make_specs, render

WEIGHTS = Path(__file__).resolve().parent.parent / "univg_core" / "mini" / "weights"


def test_the_constants_are_the_fit_on_the_shipped_vae():
    vae = load_tiny_vae(WEIGHTS / VAE_FILE)
    factors, bias = fit_latent_rgb_factors(vae, MINI_SCALE_FACTOR)
    np.testing.assert_allclose(factors, MINI_LATENT_RGB_FACTORS, atol=1e-4)
    np.testing.assert_allclose(bias, MINI_LATENT_RGB_BIAS, atol=1e-4)


def _preview(vae, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(preview, truth) per 8x8 block on [-1, 1], as ComfyUI's Latent2RGB previews a latent."""
    pixels = torch.from_numpy(frames).float().div(255).movedim(-1, 1)
    latent = vae.encode(pixels) * MINI_SCALE_FACTOR
    factors, bias = torch.tensor(MINI_LATENT_RGB_FACTORS).T, torch.tensor(MINI_LATENT_RGB_BIAS)
    return F.linear(latent.movedim(1, -1), factors, bias), F.avg_pool2d(pixels * 2 - 1, 8).movedim(1, -1)


@torch.no_grad()
def test_a_preview_tells_backgrounds_apart_and_shows_the_objects_hue():
    """A linear map of a nonlinear VAE's latents is a sketch (mean error 0.17-0.30 on [-1, 1]
    per background): it must order the three backgrounds by brightness and show a red object red."""
    vae = load_tiny_vae(WEIGHTS / VAE_FILE)
    specs = make_specs(30, 5, frames=8)
    brightness = {}
    for background in BACKGROUNDS:
        frames = np.stack([render(spec)[0] for spec in specs if spec.background == background])
        preview, truth = _preview(vae, frames)
        assert (preview - truth).abs().mean() < 0.35, background
        brightness[background] = float(preview.mean())
    assert brightness["dark"] < brightness["gray"] < brightness["light"], brightness
    preview, truth = _preview(vae, example_image()[None])
    red_blocks = (truth[..., 0] > 0.3) & (truth[..., 1] < -0.3)
    assert red_blocks.sum() >= 2
    reds = preview[red_blocks]
    assert float((reds[:, 0] - reds[:, 1]).mean()) > 0.15
