"""Triton forward kernels for the UNet's attention (inference only).

Both kernels share `_attend`: a flash-style pass over one key/value set for a tile of
BLOCK_M queries, with the softmax kept online in fp32 (running max, running sum) and
exp2 on logits pre-scaled by log2(e)/sqrt(d). Head dims that are not powers of two
(40, 80) are padded to BLOCK_D with masked loads; ragged sequence lengths are masked
by -inf logits. Tensors are read through their strides, so the transposed
[batch, heads, length, dim] views the transformer builds need no copy.

Grid: axis 0 walks batch*heads (temporal attention has up to ~100k of them and only
axis 0 may exceed 65535), axis 1 walks the query tiles.

This module imports triton at import time; `univg_core.models.attention` only imports it when
the Triton backend is chosen.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2_E = 1.4426950408889634


@triton.jit
def _attend(
    q,
    k_base,
    v_base,
    stride_kn,
    stride_kd,
    stride_vn,
    stride_vd,
    len_k,
    head_dim,
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """softmax(q k^T * scale) v for one query tile against one key/value set, in fp32."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < head_dim
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start_n in range(0, len_k, BLOCK_N):
        cols = start_n + offs_n
        col_valid = cols < len_k
        # keys are loaded transposed, [BLOCK_D, BLOCK_N], so q @ k needs no tl.trans
        k = tl.load(
            k_base + cols[None, :] * stride_kn + offs_d[:, None] * stride_kd,
            mask=col_valid[None, :] & d_valid[:, None],
            other=0.0,
        )
        v = tl.load(
            v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
            mask=col_valid[:, None] & d_valid[None, :],
            other=0.0,
        )
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        logits = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale
        logits = tl.where(col_valid[None, :], logits, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(logits, 1))
        probs = tl.exp2(logits - new_max[:, None])
        rescale = tl.exp2(row_max - new_max)
        row_sum = row_sum * rescale + tl.sum(probs, 1)
        acc = acc * rescale[:, None] + tl.dot(probs.to(v.dtype), v, input_precision=DOT_PRECISION)
        row_max = new_max
    return acc / row_sum[:, None]


@triton.jit
def _load_query_tile(
    Q, stride_qb, stride_qh, stride_qm, stride_qd, batch, head, len_q, head_dim,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, UPCAST: tl.constexpr,
):
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = tl.load(
        Q + batch * stride_qb + head * stride_qh + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
        mask=(rows[:, None] < len_q) & (offs_d[None, :] < head_dim),
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    return q


@triton.jit
def _store_tile(
    Out, out, stride_ob, stride_oh, stride_om, stride_od, batch, head, len_q, head_dim,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    tl.store(
        Out + batch * stride_ob + head * stride_oh + rows[:, None] * stride_om + offs_d[None, :] * stride_od,
        out.to(Out.dtype.element_ty),
        mask=(rows[:, None] < len_q) & (offs_d[None, :] < head_dim),
    )


@triton.jit
def self_attention_kernel(
    Q, K, V, Out,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    heads, len_q, len_k, head_dim, qk_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """out = softmax(q k^T / sqrt(d)) v: spatial and temporal self-attention, plain cross-attention."""
    pid_bh = tl.program_id(0)
    # int64 so batch * stride cannot overflow on the huge temporal batches
    batch = (pid_bh // heads).to(tl.int64)
    head = (pid_bh % heads).to(tl.int64)
    q = _load_query_tile(Q, stride_qb, stride_qh, stride_qm, stride_qd, batch, head, len_q, head_dim,
                         BLOCK_M, BLOCK_D, UPCAST)
    out = _attend(
        q, K + batch * stride_kb + head * stride_kh, V + batch * stride_vb + head * stride_vh,
        stride_kn, stride_kd, stride_vn, stride_vd, len_k, head_dim, qk_scale,
        BLOCK_M, BLOCK_N, BLOCK_D, DOT_PRECISION, UPCAST,
    )
    _store_tile(Out, out, stride_ob, stride_oh, stride_om, stride_od, batch, head, len_q, head_dim, BLOCK_M, BLOCK_D)


@triton.jit
def multi_condition_attention_kernel(
    Q, KT, VT, KI, VI, ImageScale, Out,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_ktb, stride_kth, stride_ktn, stride_ktd,
    stride_vtb, stride_vth, stride_vtn, stride_vtd,
    stride_kib, stride_kih, stride_kin, stride_kid,
    stride_vib, stride_vih, stride_vin, stride_vid,
    stride_ob, stride_oh, stride_om, stride_od,
    heads, len_q, len_text, len_image, head_dim, qk_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """UniVG's MCA in one launch: the query tile is read once for both key/value sets,
    out = softmax(q k_T^T / sqrt(d)) v_T + s * softmax(q k_I^T / sqrt(d)) v_I."""
    pid_bh = tl.program_id(0)
    batch = (pid_bh // heads).to(tl.int64)
    head = (pid_bh % heads).to(tl.int64)
    q = _load_query_tile(Q, stride_qb, stride_qh, stride_qm, stride_qd, batch, head, len_q, head_dim,
                         BLOCK_M, BLOCK_D, UPCAST)
    text = _attend(
        q, KT + batch * stride_ktb + head * stride_kth, VT + batch * stride_vtb + head * stride_vth,
        stride_ktn, stride_ktd, stride_vtn, stride_vtd, len_text, head_dim, qk_scale,
        BLOCK_M, BLOCK_N, BLOCK_D, DOT_PRECISION, UPCAST,
    )
    image = _attend(
        q, KI + batch * stride_kib + head * stride_kih, VI + batch * stride_vib + head * stride_vih,
        stride_kin, stride_kid, stride_vin, stride_vid, len_image, head_dim, qk_scale,
        BLOCK_M, BLOCK_N, BLOCK_D, DOT_PRECISION, UPCAST,
    )
    out = text + tl.load(ImageScale).to(tl.float32) * image
    _store_tile(Out, out, stride_ob, stride_oh, stride_om, stride_od, batch, head, len_q, head_dim, BLOCK_M, BLOCK_D)
