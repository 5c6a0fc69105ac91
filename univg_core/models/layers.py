"""Small building blocks shared by the UNet and the Resampler."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def pointwise(projection: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Linear, or a kernel-size-1 Conv1d/Conv2d (older checkpoints' layout), to
    channel-last `x` [N, L, C]. torch's own convolution runs as a matrix product; a host's
    (which may cast or move its weights when called) is called as the module it is."""
    if isinstance(projection, nn.Linear):
        return projection(x)
    if type(projection) in (nn.Conv1d, nn.Conv2d):
        return F.linear(x, projection.weight.flatten(1), projection.bias)
    channels_first = x.transpose(1, 2)
    if isinstance(projection, nn.Conv2d):
        return projection(channels_first.unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    return projection(channels_first).transpose(1, 2)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] of (possibly fractional) timesteps, float32."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def zero_init(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module
