"""RGB preview factors for UniVG Mini's VAE: the least-squares linear map from a model-space
latent pixel (4 channels) to the colour of the 8x8 block it encodes, in [-1, 1], which
ComfyUI's Latent2RGB previewer applies while a video renders. The constants are the fit on
world clips that `fit_latent_rgb_factors` reproduces (tests/test_mini_preview.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.tiny_vae import DOWNSAMPLE, TinyVAE
from .world import make_specs, render

MINI_SCALE_FACTOR = 0.4918
# rows: latent channels; columns: R, G, B (and the bias per colour)
MINI_LATENT_RGB_FACTORS = [
    [-0.0102, 0.0439, 0.0906],
    [0.5396, 0.1886, -0.0238],
    [-0.8725, -0.6030, -0.3969],
    [0.1285, 0.0896, 0.0745],
]
MINI_LATENT_RGB_BIAS = [-0.3999, -0.4140, -0.3595]


@torch.no_grad()
def fit_latent_rgb_factors(vae: TinyVAE, scale_factor: float, clips: int = 24, seed: int = 0):
    """(factors [4][3], bias [3]) fitted on `clips` world clips (first and last frames)."""
    specs = make_specs(clips, seed, frames=8)
    frames = np.concatenate([render(spec)[[0, -1]] for spec in specs])
    pixels = torch.from_numpy(frames).float().div(255).movedim(-1, 1)
    latents = vae.encode(pixels) * scale_factor
    colours = F.avg_pool2d(pixels * 2 - 1, DOWNSAMPLE)
    inputs = latents.movedim(1, -1).reshape(-1, latents.shape[1]).double()
    targets = colours.movedim(1, -1).reshape(-1, 3).double()
    design = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, targets).solution
    return solution[:-1].tolist(), solution[-1].tolist()
