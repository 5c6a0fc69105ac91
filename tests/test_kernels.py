"""The Triton attention backend on a machine without a GPU: the interpreter suite in
its own process, ahead-of-time compilation for sm_80/sm_90, and the dispatcher's
choices and fallbacks."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from univg_core.models import attention

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
triton = pytest.importorskip("triton", reason="triton is in requirements-dev.txt")


@pytest.fixture
def backend(monkeypatch):
    """Set UNIVG_ATTENTION and let the dispatcher choose again; restored afterwards."""

    def choose(value: str | None) -> str:
        if value is None:
            monkeypatch.delenv(attention.BACKEND_ENV, raising=False)
        else:
            monkeypatch.setenv(attention.BACKEND_ENV, value)
        attention.reset_backend()
        return attention.backend_name()

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    yield choose
    attention.reset_backend()


def qkv(*lengths, head_dim=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, n, head_dim, generator=generator) for n in lengths]


def test_interpreter_suite_passes():
    """tests/kernels_interpreted under TRITON_INTERPRET=1, which must be set before triton
    is imported, so in a fresh process."""
    env = dict(os.environ, TRITON_INTERPRET="1", UNIVG_ATTENTION="triton")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/kernels_interpreted", "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    summary = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 20 and "skipped" not in result.stdout, summary


def test_every_kernel_variant_compiles_for_sm80_and_sm90():
    from univg_core.models.kernels import aot

    results = aot.compile_all(report=lambda line: None)
    compiled = {(variant, arch) for variant, arch, _, _ in results}
    assert compiled == {(variant, arch) for variant in aot.variants() for arch in (80, 90)}
    kernels = {variant.kernel for variant in aot.variants()}
    assert kernels == {"self_attention", "multi_condition_attention"}
    # H100 and A100 give a block at most 227 KiB / 163 KiB of shared memory
    for variant, arch, _, shared in results:
        assert 0 < shared <= (232448 if arch == 90 else 166912), (variant.describe(), arch, shared)


def test_without_cuda_the_dispatcher_takes_sdpa(backend, caplog):
    with caplog.at_level(logging.INFO, logger="univg"):
        assert backend(None) == "sdpa"
        assert attention.backend_name() == "sdpa"  # chosen once
    assert [r.getMessage() for r in caplog.records] == ["UniVG attention: PyTorch SDPA (no CUDA device)"]
    q, k, v = qkv(10, 10, 10)
    assert torch.equal(attention.self_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_forced_backends_are_honoured(backend, caplog):
    with caplog.at_level(logging.INFO, logger="univg"):
        assert backend("sdpa") == "sdpa"
        assert backend("triton") == "sdpa"  # asked for, but no GPU here: said, not crashed
        assert backend("cuda-please") == "sdpa"
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "UniVG attention: PyTorch SDPA (UNIVG_ATTENTION=sdpa)"
    assert "UNIVG_ATTENTION=triton but no CUDA device; using PyTorch SDPA" in messages[1]
    assert caplog.records[1].levelno == logging.WARNING
    assert "'cuda-please' is not one of auto, sdpa, triton" in messages[2]


def test_forced_triton_is_chosen_where_it_can_run(backend, monkeypatch):
    monkeypatch.setattr(attention, "triton_unavailable_reason", lambda: None)
    assert backend("triton") == "triton"
    assert backend("auto") == "triton"
    assert backend("sdpa") == "sdpa"


def test_a_failing_kernel_falls_back_to_sdpa_with_one_warning(backend, monkeypatch, caplog):
    from univg_core.models.kernels import launch

    monkeypatch.setattr(attention, "triton_unavailable_reason", lambda: None)
    monkeypatch.setattr(launch, "unsupported_reason", lambda *tensors: None)
    attempts = []

    def broken_kernel(*args):
        attempts.append(args)
        raise RuntimeError("PassManager::run failed\n(long compiler log)")

    monkeypatch.setattr(launch, "multi_condition_attention", broken_kernel)
    assert backend("triton") == "triton"
    q, k_text, v_text, k_image, v_image = qkv(12, 77, 77, 16, 16)
    expected = F.scaled_dot_product_attention(q, k_text, v_text) + 0.5 * F.scaled_dot_product_attention(q, k_image, v_image)
    with caplog.at_level(logging.WARNING, logger="univg"):
        for _ in range(3):
            out = attention.multi_condition_attention(q, k_text, v_text, k_image, v_image, 0.5)
            assert torch.equal(out, expected)
    assert len(attempts) == 1  # the variant is not retried
    assert [r.getMessage() for r in caplog.records] == [
        "UniVG attention: Triton multi_condition_attention (float32, head dim 40) failed, "
        "using PyTorch SDPA for it from now on: RuntimeError: PassManager::run failed"
    ]


def test_calls_the_kernels_do_not_take_use_sdpa(backend, monkeypatch):
    from univg_core.models.kernels import launch

    monkeypatch.setattr(attention, "triton_unavailable_reason", lambda: None)
    monkeypatch.setattr(launch, "self_attention", lambda *a: pytest.fail("kernel called"))
    assert backend("triton") == "triton"
    q, k, v = qkv(6, 6, 6)
    # CPU tensors outside the interpreter, a head dim over 128, float64, and a backward pass
    assert torch.equal(attention.self_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    wide = qkv(4, 4, 4, head_dim=160)
    assert launch.unsupported_reason(*wide) is not None
    assert "dtype torch.float64" in launch.unsupported_reason(*(t.double() for t in (q, k, v)))
    monkeypatch.setattr(launch, "unsupported_reason", lambda *tensors: None)
    trained = q.clone().requires_grad_()
    attention.self_attention(trained, k, v).sum().backward()
    assert trained.grad is not None


def test_tile_choice_follows_the_sequence_shape():
    from univg_core.models.kernels.launch import tile_config

    temporal = tile_config(24, 24, 64)
    assert (temporal.block_m, temporal.block_n, temporal.block_d) == (32, 32, 64)
    assert tile_config(8, 8, 40).block_m == 16 and tile_config(8, 8, 40).block_d == 64
    spatial = tile_config(2880, 2880, 64)
    assert (spatial.block_m, spatial.block_n) == (128, 64)
    assert tile_config(2880, 77, 80).block_d == 128
