"""The Resampler that turns CLIP image tokens (257 x 1280 from OpenCLIP ViT-H/14) into the
image context of Multi-condition Cross Attention. Keys follow `image_proj_model.*` of the
lvdm checkpoints: `latents`, `proj_in`, `proj_out`, `norm_out`, `layers.N.{0,1}`."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..configs import ResamplerConfig
from .operations import TORCH_OPERATIONS, check_operations


class PerceiverAttention(nn.Module):
    """The learned queries attend to [image tokens ; queries]."""

    def __init__(self, dim: int, dim_head: int, heads: int, operations=TORCH_OPERATIONS):
        super().__init__()
        ops = operations
        self.heads = heads
        inner = dim_head * heads
        self.norm1 = ops.LayerNorm(dim)
        self.norm2 = ops.LayerNorm(dim)
        self.to_q = ops.Linear(dim, inner, bias=False)
        self.to_kv = ops.Linear(dim, inner * 2, bias=False)
        self.to_out = ops.Linear(inner, dim, bias=False)

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        features, latents = self.norm1(features), self.norm2(latents)
        batch, queries, _ = latents.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.heads, -1).transpose(1, 2)

        k, v = self.to_kv(torch.cat([features, latents], dim=1)).chunk(2, dim=-1)
        # softmax in float32: the originals do so for fp16 stability
        out = F.scaled_dot_product_attention(heads(self.to_q(latents)).float(), heads(k).float(), heads(v).float())
        return self.to_out(out.to(latents.dtype).transpose(1, 2).reshape(batch, queries, -1))


def _feed_forward(ops, dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(
        ops.LayerNorm(dim), ops.Linear(dim, dim * mult, bias=False), nn.GELU(), ops.Linear(dim * mult, dim, bias=False)
    )


class Resampler(nn.Module):
    """`operations` and `compute_dtype` as for the UNet3D (models/unet3d.py)."""

    def __init__(self, config: ResamplerConfig, operations=TORCH_OPERATIONS):
        super().__init__()
        ops = check_operations(operations)
        self.config = config
        self.compute_dtype = None
        self.latents = nn.Parameter(torch.randn(1, config.total_queries, config.dim) / config.dim**0.5)
        self.proj_in = ops.Linear(config.embedding_dim, config.dim)
        self.proj_out = ops.Linear(config.dim, config.output_dim)
        self.norm_out = ops.LayerNorm(config.output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(config.dim, config.dim_head, config.heads, ops),
                           _feed_forward(ops, config.dim, config.ff_mult)])
            for _ in range(config.depth)
        )

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, embedding_dim] CLIP tokens -> [B, total_queries, output_dim] image context."""
        if image_tokens.ndim != 3 or image_tokens.shape[-1] != self.config.embedding_dim:
            raise ValueError(
                f"image tokens must be [B, N, {self.config.embedding_dim}] (CLIP vision last_hidden_state), "
                f"got {list(image_tokens.shape)}"
            )
        dtype = self.compute_dtype or self.latents.dtype
        features = self.proj_in(image_tokens.to(dtype))
        latents = self.latents.to(dtype).expand(image_tokens.shape[0], -1, -1)
        for attend, feed_forward in self.layers:
            latents = attend(features, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm_out(self.proj_out(latents))
