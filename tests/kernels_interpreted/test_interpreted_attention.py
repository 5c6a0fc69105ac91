"""The Triton kernels' maths, run by Triton's interpreter on CPU tensors.

Started by tests/test_kernels.py in its own process with TRITON_INTERPRET=1 and
UNIVG_ATTENTION=triton, because the interpreter is chosen when triton is first imported.
Shapes are small: the interpreter runs the kernels in numpy.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("runs in its own process with TRITON_INTERPRET=1 (tests/test_kernels.py starts it)",
                allow_module_level=True)

from conftest import randomize_  # noqa: E402
from univg_core.models import attention  # noqa: E402
from univg_core.models.kernels import launch  # noqa: E402
from univg_core.models.transformer import SpatialTransformer, TemporalTransformer  # noqa: E402

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def heads_view(batch, heads, length, head_dim, dtype, generator, layout="transposed"):
    """[batch, heads, length, head_dim] views laid out as the UNet makes them (or odder)."""
    if layout == "transposed":  # the transformer's view(b, L, h, d).transpose(1, 2)
        return torch.randn(batch, length, heads, head_dim, generator=generator).to(dtype).transpose(1, 2)
    if layout == "strided_dim":  # every other element of a wider tensor: last-dim stride 2
        wide = torch.randn(batch, heads, length, 2 * head_dim, generator=generator).to(dtype)
        return wide[..., ::2]
    return torch.randn(batch, heads, length, head_dim, generator=generator).to(dtype)


def reference(q, k, v):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double())


def assert_close(out, expected, dtype):
    error = (out.double() - expected).abs().max().item()
    assert error <= TOLERANCE[dtype], f"max error {error:.2e} > {TOLERANCE[dtype]:.0e}"


# (batch, heads, len_q, len_k, head_dim, layout): temporal (short, many sequences),
# spatial (longer than one tile, ragged), cross-attention to 77 text tokens
SELF_CASES = [
    (12, 2, 12, 12, 40, "transposed"),
    (4, 1, 24, 24, 64, "contiguous"),
    (1, 2, 80, 80, 64, "strided_dim"),
    (1, 2, 70, 77, 80, "transposed"),
    (2, 1, 33, 33, 128, "transposed"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", SELF_CASES, ids=lambda c: f"b{c[0]}h{c[1]}q{c[2]}k{c[3]}d{c[4]}-{c[5]}")
def test_self_attention_matches_sdpa(case, dtype):
    batch, heads, len_q, len_k, head_dim, layout = case
    generator = torch.Generator().manual_seed(len_q * head_dim)
    q = heads_view(batch, heads, len_q, head_dim, dtype, generator, layout)
    k = heads_view(batch, heads, len_k, head_dim, dtype, generator, layout)
    v = heads_view(batch, heads, len_k, head_dim, dtype, generator, layout)
    out = launch.self_attention(q, k, v)
    assert out.shape == q.shape and out.dtype == dtype
    assert_close(out, reference(q, k, v), dtype)


def test_bf16_is_computed_like_fp32_and_rounded_once():
    generator = torch.Generator().manual_seed(5)
    q, k, v = (heads_view(2, 2, 20, 64, torch.bfloat16, generator) for _ in range(3))
    assert_close(launch.self_attention(q, k, v), reference(q, k, v), torch.bfloat16)


MCA_CASES = [  # (len_q, len_text, len_image, head_dim): 77 text tokens; 16 or 19 image tokens
    (70, 77, 19, 40),
    (40, 77, 16, 64),
    (17, 77, 16, 80),
    (20, 77, 19, 128),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", MCA_CASES, ids=lambda c: f"q{c[0]}t{c[1]}i{c[2]}d{c[3]}")
def test_fused_multi_condition_attention_matches_two_sdpa_calls(case, dtype):
    len_q, len_text, len_image, head_dim = case
    generator = torch.Generator().manual_seed(len_q + head_dim)
    q = heads_view(2, 2, len_q, head_dim, dtype, generator)
    k_text, v_text = (heads_view(2, 2, len_text, head_dim, dtype, generator, "contiguous") for _ in range(2))
    k_image, v_image = (heads_view(2, 2, len_image, head_dim, dtype, generator) for _ in range(2))
    scale = torch.tensor(0.7, dtype=dtype) if head_dim == 64 else 1.3
    out = launch.multi_condition_attention(q, k_text, v_text, k_image, v_image, scale)
    expected = reference(q, k_text, v_text) + float(scale) * reference(q, k_image, v_image)
    assert_close(out, expected, dtype)


def test_dispatch_takes_the_kernels_when_forced(monkeypatch):
    attention.reset_backend()
    calls = []
    real = launch.multi_condition_attention
    monkeypatch.setattr(launch, "multi_condition_attention", lambda *a: calls.append("mca") or real(*a))
    generator = torch.Generator().manual_seed(9)
    q, k_text, v_text, k_image, v_image = (heads_view(1, 2, n, 40, torch.float32, generator) for n in (30, 77, 77, 16, 16))
    out = attention.multi_condition_attention(q, k_text, v_text, k_image, v_image, 0.5)
    assert attention.backend_name() == "triton" and calls == ["mca"]
    assert_close(out, reference(q, k_text, v_text) + 0.5 * reference(q, k_image, v_image), torch.float32)


def test_transformer_blocks_give_the_same_output_with_either_backend(monkeypatch):
    """The UNet's spatial transformer (self-attention, then MCA with a learnable gate) and
    temporal transformer through the kernels, against the same modules on SDPA. (A whole
    tiny UNet takes minutes: the interpreter runs the grid's programs one by one.)"""
    spatial = randomize_(SpatialTransformer(32, 2, 16, context_dim=24, norm_groups=8, image_branch=True,
                                            image_gate=True), seed=1).eval()
    temporal = randomize_(TemporalTransformer(32, 2, 16, norm_groups=8), seed=2).eval()
    generator = torch.Generator().manual_seed(4)
    frames, video = 8, torch.randn(1, 32, 8, 6, 6, generator=generator)
    # text once for the video (its keys and values repeated for the frames, as the UNet passes
    # them), image tokens per frame (DynamiCrafter's layout): both layouts through the kernel
    context = torch.randn(1, 77, 24, generator=generator)
    image_context = torch.randn(frames, 16, 24, generator=generator)
    calls = {"self_attention": 0, "multi_condition_attention": 0}
    for name in calls:
        real = getattr(launch, name)
        monkeypatch.setattr(launch, name, lambda *a, _name=name, _real=real: calls.__setitem__(_name, calls[_name] + 1) or _real(*a))

    def run():
        attention.reset_backend()
        per_frame = video[0].transpose(0, 1)  # [t, c, h, w]
        x = spatial(per_frame, context, image_context).transpose(0, 1).unsqueeze(0)
        return temporal(x)

    with torch.inference_mode():
        monkeypatch.setenv("UNIVG_ATTENTION", "sdpa")
        expected = run()
        monkeypatch.setenv("UNIVG_ATTENTION", "triton")
        out = run()
    assert attention.backend_name() == "triton"
    assert calls == {"self_attention": 3, "multi_condition_attention": 1}, calls  # spatial attn1; temporal attn1, attn2
    error = (out - expected).abs().max().item()
    assert error < 1e-4, error
    assert (expected - video).abs().max() > 0.1  # the blocks changed the input: attention mattered


def test_cpu_benchmark_checks_every_temporal_shape():
    """`python -m univg_core.cli.bench attention` without a GPU: interpreter correctness per shape."""
    import argparse

    from univg_core.cli.bench_attention import bench_attention, format_table

    args = argparse.Namespace(device="cpu", dtype="fp16", kind=["temporal"], warmup=0, repeats=1, verbose=False)
    result = bench_attention(args)
    assert [row["shape"].split()[:3] for row in result["rows"]] == [
        ["temporal", latent, f"L{level}"] for latent in ("40x72", "90x160") for level in range(3)
    ]
    assert all(row["max_error"] < 1e-5 and row["checked_slice"] == [64, 1, 24, 64] for row in result["rows"])
    assert "correctness only" in format_table(result)
