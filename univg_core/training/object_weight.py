"""A loss that counts a small object on a plain background for more than its few pixels: the
pixels that stand apart from their frame's median colour, and the latent cells they fall in,
weigh 1 + w. UniVG Mini's option, not the paper's: a world object is 2-7% of a frame, so an
average over cells pays little for its colour (see docs/univg_mini_findings.md)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

OBJECT_DISTANCE = 0.1  # RGB distance in [0, 1] units: the world's colours stand 0.43-1.11 from every background


def object_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> [N, 1, H, W] floats, 1 where a pixel stands further than
    OBJECT_DISTANCE from its image's median colour (the background, where the background is plain)."""
    median = pixels.flatten(2).median(dim=2).values[:, :, None, None]
    return ((pixels - median).norm(dim=1, keepdim=True) > OBJECT_DISTANCE).float()


def object_share(video: torch.Tensor, latent_height: int, latent_width: int) -> torch.Tensor:
    """[T, 3, H, W] frames in [-1, 1] -> [T, h, w]: the share of each latent cell's pixels that are
    object pixels (H and W whole multiples of h and w, as a VAE's downsampling makes them)."""
    frames, _, height, width = video.shape
    if height % latent_height or width % latent_width:
        raise ValueError(f"{height}x{width} frames do not split into {latent_height}x{latent_width} latent cells")
    mask = object_pixels((video + 1) / 2)
    return F.avg_pool2d(mask, (height // latent_height, width // latent_width))[:, 0]


def loss_weights(share: torch.Tensor, weight: float) -> torch.Tensor:
    """A window's object shares [T, h, w] -> weights [1, 1, T, h, w] broadcasting over the channels."""
    return (1 + weight * share)[None, None]


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean squared error; with weights [B, 1, T, h, w], their weighted average over every element
    (all weights 1 gives the plain mean)."""
    if weights is None:
        return F.mse_loss(prediction, target)  # the loss runs without the option had, to the bit
    error = (prediction - target) ** 2
    weights = weights.expand_as(error)
    return (weights * error).sum() / weights.sum()
