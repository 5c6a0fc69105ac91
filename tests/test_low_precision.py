"""bf16 and fp16 against fp32 on the CPU: a UNet at the real models' widths, and 50-step renders
of a tiny zero-terminal-SNR v-prediction model and of UniVG Mini (docs/gpu_and_memory.md has
the measured errors)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from conftest import randomize_, relative_error, tiny_models
from univg_core.configs import get_preset
from univg_core.diffusion import pipelines
from univg_core.diffusion.guidance import Condition, make_guided_denoiser, unet_model_fn
from univg_core.diffusion.schedule import alphas_cumprod_for
from univg_core.models.unet3d import UNet3D

# VideoCrafter2's channels (320 / 640), head width (64) and text width (1024), two levels deep
REAL_WIDTH = dataclasses.replace(get_preset("videocrafter2_t2v_512").unet, channel_mult=(1, 2), num_res_blocks=1)


@pytest.fixture(scope="module")
def real_width_outputs():
    """The real-width UNet's output in fp32, bf16 and fp16 (None where this CPU cannot run fp16)."""
    unet = randomize_(UNet3D(REAL_WIDTH), seed=3).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, REAL_WIDTH.context_dim, generator=generator)
    outputs = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        model = copy.deepcopy(unet).to(dtype)
        try:
            with torch.no_grad():
                outputs[dtype] = model(x.to(dtype), torch.tensor([500]), context=context.to(dtype))
        except (RuntimeError, NotImplementedError) as error:  # an op without a half-precision CPU kernel
            outputs[dtype] = error
    return outputs


def test_bf16_at_real_width_is_within_2_percent_of_fp32(real_width_outputs):
    full, bf16 = real_width_outputs[torch.float32], real_width_outputs[torch.bfloat16]
    assert torch.isfinite(bf16).all()
    assert bf16.dtype == torch.bfloat16
    assert 0 < relative_error(bf16, full) < 0.02, relative_error(bf16, full)


def test_fp16_at_real_width_is_within_half_a_percent_of_fp32(real_width_outputs):
    fp16 = real_width_outputs[torch.float16]
    if isinstance(fp16, Exception):
        pytest.skip(f"this CPU's PyTorch has no fp16 kernel for an op of the UNet: {fp16}")
    assert torch.isfinite(fp16).all()
    assert 0 < relative_error(fp16, real_width_outputs[torch.float32]) < 0.005


def render_tiny_v_model(dtype: torch.dtype, steps: int = 50) -> torch.Tensor:
    """A 50-step render of the tiny F_SR (v-prediction, zero terminal SNR: the last steps ask the
    network for the clean sample from pure noise) with CFG 7.5, the model in `dtype`."""
    config, unet, _ = tiny_models("univg_sr", seed=4)
    with torch.no_grad():  # outputs of a trained model's size
        unet.out[-1].weight.mul_(0.02)
        unet.out[-1].bias.mul_(0.02)
    unet = unet.to(dtype)
    generator = torch.Generator().manual_seed(1)
    text = torch.randn(1, 77, config.unet.context_dim, generator=generator)
    null = torch.randn(1, 77, config.unet.context_dim, generator=generator)
    denoise = make_guided_denoiser(unet_model_fn(unet), "cfg", {"cond": Condition(text), "uncond": Condition(null)},
                                   w_text=7.5)
    shape = (1, 4, 4, 8, 8)
    noise = torch.randn(shape, generator=generator)
    with torch.no_grad():
        return pipelines.generate(denoise, shape, alphas_cumprod_for(config.schedule), config.prediction, steps=steps,
                                  sampler="ddim", spacing=config.schedule.timestep_spacing, initial_noise=noise)


def test_a_50_step_bf16_render_of_a_zero_snr_v_model_is_finite_and_near_fp32():
    full, bf16 = render_tiny_v_model(torch.float32), render_tiny_v_model(torch.bfloat16)
    assert torch.isfinite(bf16).all() and bf16.abs().max() < 100
    assert 0 < relative_error(bf16, full) < 0.002, relative_error(bf16, full)
