"""The one place every attention call of the UNet goes through.

Tensors are [batch, heads, length, head_dim]. The default backend is PyTorch SDPA;
GPU kernels plug in behind `self_attention` and `multi_condition_attention`.
Temporal attention runs over a huge batch (B*H*W sequences of a few frames), so every
call is split along the batch so that no single launch exceeds `MAX_BATCH_HEADS`
(CUDA kernels cap their grid near 65535 and memory stays bounded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_BATCH_HEADS = 65535


def _batch_chunks(batch: int, heads: int):
    step = max(1, MAX_BATCH_HEADS // max(1, heads))
    for start in range(0, batch, step):
        yield slice(start, min(batch, start + step))


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    batch, heads = q.shape[0], q.shape[1]
    if batch * heads <= MAX_BATCH_HEADS:
        return F.scaled_dot_product_attention(q, k, v)
    out = torch.empty_like(q)
    for part in _batch_chunks(batch, heads):
        out[part] = F.scaled_dot_product_attention(q[part], k[part], v[part])
    return out


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, for spatial and temporal self- and cross-attention."""
    return _sdpa(q, k, v)


def multi_condition_attention(
    q: torch.Tensor,
    k_text: torch.Tensor,
    v_text: torch.Tensor,
    k_image: torch.Tensor,
    v_image: torch.Tensor,
    image_scale: float | torch.Tensor,
) -> torch.Tensor:
    """UniVG's Multi-condition Cross Attention (paper eq. 3.3): one query, two key/value
    sets, two softmaxes, out = attn(q, text) + image_scale * attn(q, image)."""
    return _sdpa(q, k_text, v_text) + image_scale * _sdpa(q, k_image, v_image)


def relative_position_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_k: torch.Tensor,
    rel_v: torch.Tensor,
) -> torch.Tensor:
    """Temporal attention with learned relative-position terms (VideoCrafter1-1024):
    logits += q . rel_k[i, j], out += p . rel_v[i, j]. rel_* are [Lq, Lk, head_dim].
    Sequences are a few frames long, so the explicit form is cheap."""
    scale = q.shape[-1] ** -0.5
    out = torch.empty_like(q)
    for part in _batch_chunks(q.shape[0], q.shape[1]):
        qp = q[part]
        logits = (qp @ k[part].transpose(-1, -2) + torch.einsum("bhid,ijd->bhij", qp, rel_k)) * scale
        probs = logits.float().softmax(dim=-1).to(q.dtype)
        out[part] = probs @ v[part] + torch.einsum("bhij,ijd->bhid", probs, rel_v)
    return out


def backend_name() -> str:
    return "sdpa"
