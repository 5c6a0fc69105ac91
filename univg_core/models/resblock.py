"""Convolutional blocks of the UNet3D: spatial ResBlock with its temporal convolution,
down- and up-sampling. Names are the lvdm checkpoint keys, including the originals'
misspelled `temopral_conv`."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import zero_init
from .operations import TORCH_OPERATIONS, float32_group_norm


class TemporalConvBlock(nn.Module):
    """Four (3,1,1) convolutions along time with a residual; the last is zero-initialised
    so a fresh block is the identity. Input [b, c, t, h, w]."""

    def __init__(self, channels: int, norm_groups: int = 32, dropout: float = 0.1, operations=TORCH_OPERATIONS):
        super().__init__()
        ops = operations
        kernel, padding = (3, 1, 1), (1, 0, 0)
        self.conv1 = nn.Sequential(
            float32_group_norm(ops, norm_groups, channels), nn.SiLU(),
            ops.Conv3d(channels, channels, kernel, padding=padding),
        )

        def later_conv() -> nn.Sequential:
            return nn.Sequential(
                float32_group_norm(ops, norm_groups, channels),
                nn.SiLU(),
                nn.Dropout(dropout),
                ops.Conv3d(channels, channels, kernel, padding=padding),
            )

        self.conv2 = later_conv()
        self.conv3 = later_conv()
        self.conv4 = later_conv()
        zero_init(self.conv4[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """Spatial residual block on [(b t), c, h, w] with the time embedding added, followed
    (when enabled) by the temporal convolution on [b, c, t, h, w]."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        temporal_conv: bool = True,
        norm_groups: int = 32,
        dropout: float = 0.0,
        operations=TORCH_OPERATIONS,
    ):
        super().__init__()
        ops = operations
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(
            float32_group_norm(ops, norm_groups, channels), nn.SiLU(), ops.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), ops.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            float32_group_norm(ops, norm_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_init(ops.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = ops.Conv2d(channels, out_channels, 1)
        if temporal_conv:
            self.temopral_conv = TemporalConvBlock(out_channels, norm_groups, operations=ops)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, batch: int) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        if hasattr(self, "temopral_conv"):
            frames_batch, channels, height, width = h.shape
            video = h.view(batch, frames_batch // batch, channels, height, width).transpose(1, 2)
            video = self.temopral_conv(video)
            h = video.transpose(1, 2).reshape(frames_batch, channels, height, width)
        return h


class Downsample(nn.Module):
    def __init__(self, channels: int, operations=TORCH_OPERATIONS):
        super().__init__()
        self.op = operations.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, operations=TORCH_OPERATIONS):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
