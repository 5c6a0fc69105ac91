"""The one place every attention call of the UNet goes through.

Tensors are [batch, heads, length, head_dim]. Two backends compute the same maths:
PyTorch SDPA (everywhere) and the Triton kernels of `univg_core.models.kernels` (CUDA, sm_80+,
inference). UNIVG_ATTENTION=auto|sdpa|triton picks; auto takes Triton when it can run.
The choice is made once and logged once. A call the kernels do not take (dtype, head
dim, a backward pass) uses SDPA; a kernel that fails to compile or launch is reported
once and its variant uses SDPA from then on, so a render never dies on a kernel.
Temporal attention runs over a huge batch (B*H*W sequences of a few frames), so SDPA
calls are split along the batch so that no single launch exceeds `MAX_BATCH_HEADS`
(CUDA kernels cap their grid near 65535 and memory stays bounded); a call whose score matrix
would pass `MAX_SCORE_BYTES` (should SDPA fall back to its math form) is split over its queries.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F

log = logging.getLogger("univg")

MAX_BATCH_HEADS = 65535
# the largest float32 score matrix one SDPA call may need if it falls back to its math form
# (fused kernels never build it); longer calls are split over their queries
MAX_SCORE_BYTES = 1 << 30
BACKEND_ENV = "UNIVG_ATTENTION"
BACKENDS = ("auto", "sdpa", "triton")
MIN_CUDA_CAPABILITY = (8, 0)

_backend: str | None = None
_failed_variants: set[tuple] = set()


def triton_unavailable_reason() -> str | None:
    """None when the Triton kernels can run here, else why not."""
    try:
        from .kernels import launch
    except Exception as error:  # ImportError, or a triton that fails to initialise
        return f"triton does not import ({type(error).__name__}: {error})"
    if launch.interpreting():
        return None
    if not torch.cuda.is_available():
        return "no CUDA device"
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CUDA_CAPABILITY:
        return f"GPU compute capability {capability[0]}.{capability[1]} < 8.0"
    return None


def _resolve_backend() -> str:
    requested = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if requested not in BACKENDS:
        log.warning("%s=%r is not one of %s; using auto", BACKEND_ENV, requested, ", ".join(BACKENDS))
        requested = "auto"
    if requested == "sdpa":
        log.info("UniVG attention: PyTorch SDPA (%s=sdpa)", BACKEND_ENV)
        return "sdpa"
    reason = triton_unavailable_reason()
    if reason is None:
        log.info("UniVG attention: Triton kernels (%s=%s)", BACKEND_ENV, requested)
        return "triton"
    if requested == "triton":
        log.warning("UniVG attention: %s=triton but %s; using PyTorch SDPA", BACKEND_ENV, reason)
    else:
        log.info("UniVG attention: PyTorch SDPA (%s)", reason)
    return "sdpa"


def backend_name() -> str:
    """'triton' or 'sdpa': resolved on first use, then fixed for the process."""
    global _backend
    if _backend is None:
        _backend = _resolve_backend()
    return _backend


def reset_backend() -> None:
    """Forget the choice and the failed kernels (tests change UNIVG_ATTENTION)."""
    global _backend
    _backend = None
    _failed_variants.clear()


def _kernel_for(name: str, q: torch.Tensor, *keys_values: torch.Tensor):
    """The launch function for this call, or None when SDPA must take it."""
    if backend_name() != "triton" or q.device.type == "meta":  # meta: shapes only (memory planning)
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, *keys_values)):
        return None  # forward-only kernels: training takes SDPA
    from .kernels import launch

    if launch.unsupported_reason(q, *keys_values) is not None:
        return None
    variant = (name, q.dtype, q.shape[-1])
    if variant in _failed_variants:
        return None
    return variant, getattr(launch, name)


def _run_kernel(found, *args):
    variant, kernel = found
    try:
        return kernel(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as error:
        _failed_variants.add(variant)
        name, dtype, head_dim = variant
        log.warning(
            "UniVG attention: Triton %s (%s, head dim %d) failed, using PyTorch SDPA for it from now on: %s: %s",
            name, str(dtype).removeprefix("torch."), head_dim, type(error).__name__, str(error).splitlines()[0] if str(error) else "",
        )
        return None


def _batch_chunks(batch: int, heads: int):
    step = max(1, MAX_BATCH_HEADS // max(1, heads))
    for start in range(0, batch, step):
        yield slice(start, min(batch, start + step))


def query_chunk(batch: int, heads: int, queries: int, keys: int, max_score_bytes: int) -> int:
    """How many queries one SDPA call may take so that its float32 scores fit `max_score_bytes`;
    a clear error when not even one query row fits."""
    row = batch * heads * keys * 4
    if row > max_score_bytes:
        raise ValueError(f"attention over {keys} keys for {batch} x {heads} (batch x heads) needs {row} bytes "
                         f"for one query's scores, more than the budget of {max_score_bytes}: raise the budget "
                         "or attend over fewer frames at once")
    return min(queries, max_score_bytes // row)


def _sdpa_by_queries(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    batch, heads, queries = q.shape[:3]
    step = query_chunk(batch, heads, queries, k.shape[2], MAX_SCORE_BYTES)
    if step >= queries:
        return F.scaled_dot_product_attention(q, k, v)
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    for start in range(0, queries, step):  # each query's softmax reads only its own row of scores
        out[:, :, start:start + step] = F.scaled_dot_product_attention(q[:, :, start:start + step], k, v)
    return out


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if q.device.type == "meta":
        # memory planning runs the model on meta tensors, where SDPA falls back to its math form
        # (the whole score matrix); the fused kernels that run on devices allocate the output only
        return q.new_empty(*q.shape[:-1], v.shape[-1])
    batch, heads = q.shape[0], q.shape[1]
    if batch * heads <= MAX_BATCH_HEADS:
        return _sdpa_by_queries(q, k, v)
    out = torch.empty_like(q)
    for part in _batch_chunks(batch, heads):
        out[part] = _sdpa_by_queries(q[part], k[part], v[part])
    return out


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, for spatial and temporal self- and cross-attention."""
    found = _kernel_for("self_attention", q, k, v)
    if found is not None:
        out = _run_kernel(found, q, k, v)
        if out is not None:
            return out
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
    found = _kernel_for("multi_condition_attention", q, k_text, v_text, k_image, v_image)
    if isinstance(image_scale, torch.Tensor) and (
        image_scale.numel() != 1 or (torch.is_grad_enabled() and image_scale.requires_grad)
    ):
        found = None  # a per-sample scale (SDPA broadcasts it), or a gate being trained
    if found is not None:
        out = _run_kernel(found, q, k_text, v_text, k_image, v_image, image_scale)
        if out is not None:
            return out
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

