"""Small building blocks shared by the UNet and the Resampler."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the weight dtype, as the originals do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def pointwise(projection: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Linear, or a kernel-size-1 Conv1d/Conv2d (older checkpoints' layout),
    to channel-last `x` as a matrix product."""
    if isinstance(projection, nn.Linear):
        return projection(x)
    return F.linear(x, projection.weight.flatten(1), projection.bias)


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
