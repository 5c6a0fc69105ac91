"""Launch the Triton attention kernels on [batch, heads, length, head_dim] tensors.

`unsupported_reason` says why a call cannot take a kernel (the dispatcher then uses
SDPA); `tile_config` picks the tiles: short sequences (temporal attention, 8-32
frames) get one square tile of next_pow2(L) >= 16 and few warps instead of the
128x64 tiles that suit spatial attention and would be mostly masked here.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch
import triton

from .attention_kernels import LOG2_E, multi_condition_attention_kernel, self_attention_kernel

GPU_DTYPES = (torch.float16, torch.bfloat16)
# fp32 runs only under the interpreter (tests): on a GPU an exact fp32 tl.dot compiles
# to scalar FMAs (minutes to build, slower than SDPA), so fp32 renders take SDPA
SUPPORTED_DTYPES = GPU_DTYPES + (torch.float32,)
MAX_HEAD_DIM = 128
SHORT_SEQUENCE = 64


@dataclass(frozen=True)
class TileConfig:
    block_m: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def padded_head_dim(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def tile_config(len_q: int, len_k: int, head_dim: int) -> TileConfig:
    block_d = padded_head_dim(head_dim)
    longest = max(len_q, len_k)
    if longest <= SHORT_SEQUENCE:
        block = max(16, triton.next_power_of_2(longest))
        return TileConfig(block, block, block_d, num_warps=1 if block == 16 else (2 if block == 32 else 4), num_stages=1)
    return long_tile_config(head_dim)


def long_tile_config(head_dim: int) -> TileConfig:
    """Spatial self-attention, and always MCA (its 77 text tokens never make a short sequence)."""
    block_d = padded_head_dim(head_dim)
    if block_d <= 64:
        return TileConfig(128, 64, block_d, num_warps=4, num_stages=3)
    return TileConfig(64, 64, block_d, num_warps=4, num_stages=2)


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 is for tests and must match SDPA to 1e-5: no TF32 rounding
    return "ieee" if dtype == torch.float32 else "tf32"


def upcast(dtype: torch.dtype) -> bool:
    # The interpreter computes bf16 arithmetic wrongly; the GPU path keeps bf16 tiles.
    return dtype == torch.bfloat16 and interpreting()


def unsupported_reason(q: torch.Tensor, *keys_values: torch.Tensor) -> str | None:
    tensors = (q, *keys_values)
    if any(t.dim() != 4 for t in tensors):
        return "tensors are not [batch, heads, length, head_dim]"
    if q.dtype not in SUPPORTED_DTYPES or any(t.dtype != q.dtype for t in tensors):
        return f"dtype {q.dtype} (kernels take one of fp16, bf16, fp32 for all inputs)"
    if not interpreting():
        if q.device.type != "cuda":
            return f"device {q.device} is not CUDA"
        if q.dtype not in GPU_DTYPES:
            return f"dtype {q.dtype} on the GPU (kernels take fp16 or bf16 there)"
    if any(t.device != q.device for t in tensors):
        return "inputs on different devices"
    batch, heads, len_q, head_dim = q.shape
    if head_dim > MAX_HEAD_DIM:
        return f"head dim {head_dim} > {MAX_HEAD_DIM}"
    if any(t.shape[0] != batch or t.shape[1] != heads or t.shape[3] != head_dim for t in keys_values):
        return "keys/values do not match the query's batch, heads and head dim"
    for k, v in zip(keys_values[0::2], keys_values[1::2]):
        if k.shape[2] != v.shape[2] or k.shape[2] == 0:
            return "keys and values differ in length or are empty"
    if len_q == 0 or batch * heads == 0:
        return "empty query"
    return None


def _output_like(q: torch.Tensor) -> torch.Tensor:
    # [b, L, h, d] storage seen as [b, h, L, d]: the transformer's transpose(1, 2).flatten(2)
    # after attention is then a view, not a copy
    batch, heads, len_q, head_dim = q.shape
    return torch.empty(batch, len_q, heads, head_dim, device=q.device, dtype=q.dtype).transpose(1, 2)


def _scale_tensor(image_scale: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(image_scale, torch.Tensor):
        if image_scale.numel() != 1:
            raise ValueError(f"image_scale must be a scalar, got shape {tuple(image_scale.shape)}")
        return image_scale.detach().reshape(1).to(device=device, dtype=torch.float32)
    return torch.full((1,), float(image_scale), device=device, dtype=torch.float32)


def _on_device(q: torch.Tensor):
    # Triton launches on the current CUDA device's stream: make it the tensors' device
    return torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext()


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with _on_device(q):
        return _self_attention(q, k, v)


def multi_condition_attention(q, k_text, v_text, k_image, v_image, image_scale) -> torch.Tensor:
    with _on_device(q):
        return _multi_condition_attention(q, k_text, v_text, k_image, v_image, image_scale)


def _self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    batch, heads, len_q, head_dim = q.shape
    tiles = tile_config(len_q, k.shape[2], head_dim)
    out = _output_like(q)
    grid = (batch * heads, triton.cdiv(len_q, tiles.block_m))
    self_attention_kernel[grid](
        q, k, v, out,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        heads, len_q, k.shape[2], head_dim, LOG2_E / math.sqrt(head_dim),
        BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_D=tiles.block_d,
        DOT_PRECISION=dot_precision(q.dtype), UPCAST=upcast(q.dtype),
        num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return out


def _multi_condition_attention(
    q: torch.Tensor,
    k_text: torch.Tensor,
    v_text: torch.Tensor,
    k_image: torch.Tensor,
    v_image: torch.Tensor,
    image_scale: float | torch.Tensor,
) -> torch.Tensor:
    batch, heads, len_q, head_dim = q.shape
    tiles = long_tile_config(head_dim)
    out = _output_like(q)
    grid = (batch * heads, triton.cdiv(len_q, tiles.block_m))
    multi_condition_attention_kernel[grid](
        q, k_text, v_text, k_image, v_image, _scale_tensor(image_scale, q.device), out,
        *q.stride(), *k_text.stride(), *v_text.stride(), *k_image.stride(), *v_image.stride(), *out.stride(),
        heads, len_q, k_text.shape[2], k_image.shape[2], head_dim, LOG2_E / math.sqrt(head_dim),
        BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_D=tiles.block_d,
        DOT_PRECISION=dot_precision(q.dtype), UPCAST=upcast(q.dtype),
        num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return out
