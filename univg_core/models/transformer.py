"""Spatial and temporal transformers of the UNet3D, with Multi-condition Cross Attention.

Module and parameter names are the checkpoint keys of the lvdm models
(`proj_in`, `transformer_blocks.0.attn1.to_q`, `to_k_ip`, `ff.net.0.proj`, ...).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attention
from .layers import pointwise, zero_init
from .operations import TORCH_OPERATIONS, float32_group_norm


class RelativePosition(nn.Module):
    """Learned embedding per clipped frame distance j - i in [-max_distance, max_distance]."""

    def __init__(self, head_dim: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.embeddings_table = nn.Parameter(torch.empty(2 * max_distance + 1, head_dim))
        nn.init.xavier_uniform_(self.embeddings_table)

    def forward(self, length_q: int, length_k: int) -> torch.Tensor:
        device = self.embeddings_table.device
        distance = torch.arange(length_k, device=device)[None, :] - torch.arange(length_q, device=device)[:, None]
        index = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.embeddings_table[index]


class Attention(nn.Module):
    """Self-, cross- or multi-condition cross-attention.

    With an image branch, text tokens go through to_k/to_v and image tokens through
    to_k_ip/to_v_ip against the same queries; the two softmax outputs are summed with
    `image_scale` (times tanh(alpha) + 1 when the gate is learnable)."""

    def __init__(
        self,
        query_dim: int,
        heads: int,
        head_dim: int,
        context_dim: Optional[int] = None,
        image_branch: bool = False,
        image_scale: float = 1.0,
        image_gate: bool = False,
        relative_length: Optional[int] = None,
        dropout: float = 0.0,
        operations=TORCH_OPERATIONS,
    ):
        super().__init__()
        ops = operations
        inner = heads * head_dim
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = ops.Linear(query_dim, inner, bias=False)
        self.to_k = ops.Linear(context_dim, inner, bias=False)
        self.to_v = ops.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(ops.Linear(inner, query_dim), nn.Dropout(dropout))
        self.image_scale = image_scale
        self.has_image_branch = image_branch
        if image_branch:
            self.to_k_ip = ops.Linear(context_dim, inner, bias=False)
            self.to_v_ip = ops.Linear(context_dim, inner, bias=False)
            if image_gate:
                self.alpha = nn.Parameter(torch.tensor(0.0))
        self.relative_length = relative_length
        if relative_length:
            self.relative_position_k = RelativePosition(head_dim, relative_length)
            self.relative_position_v = RelativePosition(head_dim, relative_length)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, -1).transpose(1, 2)

    def _context_heads(self, linear: nn.Linear, context: torch.Tensor, queries: int) -> torch.Tensor:
        """Keys or values for `queries` query rows from a context with one row per video: each
        video's keys serve its frames (rows b*T .. b*T+T-1), projected once, not once per frame."""
        heads = self._heads(linear(context))
        if heads.shape[0] == queries:
            return heads
        if queries % heads.shape[0]:
            raise ValueError(f"a context of batch {heads.shape[0]} cannot serve {queries} query rows "
                             "(expected one context per video, or one per frame)")
        return heads.repeat_interleave(queries // heads.shape[0], dim=0)

    def forward(
        self,
        x: torch.Tensor,
        context: Optional[torch.Tensor] = None,
        image_context: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        source = x if context is None else context
        q = self._heads(self.to_q(x))
        k = self._context_heads(self.to_k, source, x.shape[0])
        v = self._context_heads(self.to_v, source, x.shape[0])
        if self.relative_length:
            length_q, length_k = q.shape[2], k.shape[2]
            out = attention.relative_position_attention(
                q, k, v, self.relative_position_k(length_q, length_k), self.relative_position_v(length_q, length_k)
            )
        elif self.has_image_branch and image_context is not None and image_context.shape[1] > 0:
            scale = self.image_scale
            if hasattr(self, "alpha"):
                scale = scale * (torch.tanh(self.alpha) + 1).to(q.dtype)
            out = attention.multi_condition_attention(
                q,
                k,
                v,
                self._context_heads(self.to_k_ip, image_context, x.shape[0]),
                self._context_heads(self.to_v_ip, image_context, x.shape[0]),
                scale,
            )
        else:
            out = attention.self_attention(q, k, v)
        out = out.transpose(1, 2).flatten(2)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, operations=TORCH_OPERATIONS):
        super().__init__()
        self.proj = operations.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0, operations=TORCH_OPERATIONS):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner, operations), nn.Dropout(dropout), operations.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """attn1 (self) -> attn2 (cross, or a second self-attention when context_dim is None) -> GEGLU FF."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: Optional[int] = None,
                 operations=TORCH_OPERATIONS, **attn2_options):
        super().__init__()
        ops = operations
        relative_length = attn2_options.get("relative_length")
        self.attn1 = Attention(dim, heads, head_dim, relative_length=relative_length, operations=ops)
        self.ff = FeedForward(dim, operations=ops)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=context_dim, operations=ops, **attn2_options)
        self.norm1 = ops.LayerNorm(dim)
        self.norm2 = ops.LayerNorm(dim)
        self.norm3 = ops.LayerNorm(dim)

    def forward(self, x, context=None, image_context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context, image_context) + x
        return self.ff(self.norm3(x)) + x


def _projection(ops, linear: bool, conv_dims: int, channels_in: int, channels_out: int) -> nn.Module:
    if linear:
        return ops.Linear(channels_in, channels_out)
    conv = ops.Conv1d if conv_dims == 1 else ops.Conv2d
    return conv(channels_in, channels_out, kernel_size=1)


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the H*W tokens: input [(b t), c, h, w]."""

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        context_dim: int,
        depth: int = 1,
        use_linear: bool = True,
        norm_groups: int = 32,
        image_branch: bool = False,
        image_scale: float = 1.0,
        image_gate: bool = False,
        operations=TORCH_OPERATIONS,
    ):
        super().__init__()
        ops = operations
        inner = heads * head_dim
        self.norm = float32_group_norm(ops, norm_groups, channels, eps=1e-6)
        self.proj_in = _projection(ops, use_linear, 2, channels, inner)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner,
                heads,
                head_dim,
                context_dim=context_dim,
                operations=ops,
                image_branch=image_branch,
                image_scale=image_scale,
                image_gate=image_gate,
            )
            for _ in range(depth)
        )
        self.proj_out = zero_init(_projection(ops, use_linear, 2, inner, channels))

    def forward(self, x, context=None, image_context=None):
        frames, channels, height, width = x.shape
        residual = x
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [(b t), h*w, c]
        tokens = pointwise(self.proj_in, tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, context, image_context)
        tokens = pointwise(self.proj_out, tokens)
        return tokens.transpose(1, 2).reshape(frames, channels, height, width) + residual


class TemporalTransformer(nn.Module):
    """Self-attention along time at every spatial position: input [b, c, t, h, w]."""

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        depth: int = 1,
        use_linear: bool = True,
        norm_groups: int = 32,
        relative_length: Optional[int] = None,
        operations=TORCH_OPERATIONS,
    ):
        super().__init__()
        ops = operations
        inner = heads * head_dim
        self.norm = float32_group_norm(ops, norm_groups, channels, eps=1e-6)
        self.proj_in = _projection(ops, use_linear, 1, channels, inner)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, head_dim, relative_length=relative_length, operations=ops)
            for _ in range(depth)
        )
        self.proj_out = zero_init(_projection(ops, use_linear, 1, inner, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        residual = x
        tokens = self.norm(x).permute(0, 3, 4, 2, 1).reshape(batch * height * width, frames, channels)
        tokens = pointwise(self.proj_in, tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        tokens = pointwise(self.proj_out, tokens)
        tokens = tokens.reshape(batch, height, width, frames, channels).permute(0, 4, 3, 1, 2)
        return tokens + residual
