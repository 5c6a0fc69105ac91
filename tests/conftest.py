"""Shared helpers: tiny seeded models with every parameter randomised (a fresh UNet's
zero-initialised output layers would hide most of the network from a test)."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from univg_core.configs import ModelConfig, get_preset  # noqa: E402
from univg_core.image_proj import Resampler  # noqa: E402
from univg_core.unet3d import UNet3D  # noqa: E402

TINY_FAMILIES = [
    "videocrafter2_t2v_512",
    "videocrafter1_t2v_1024",
    "videocrafter1_i2v_512",
    "dynamicrafter_256",
    "dynamicrafter_512",
    "dynamicrafter_1024",
    "univg_base",
    "univg_animation",
    "univg_sr",
]
# what the tensors of a tiny original-layout file cannot tell
TINY_OVERRIDES = dict(num_head_channels=16, temporal_length=8, resampler_dim_head=8, resampler_num_queries=4)


@torch.no_grad()
def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in module.named_parameters():
        if parameter.ndim >= 2:
            fan_in = parameter[0].numel()
            values = torch.randn(parameter.shape, generator=generator) / fan_in**0.5
        elif name.endswith("alpha"):
            values = torch.randn((), generator=generator)
        else:
            values = 0.1 * torch.randn(parameter.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                values += 1.0
        parameter.copy_(values)
    return module


def tiny_config(family: str) -> ModelConfig:
    return get_preset(f"tiny_{family}")


def tiny_models(family: str, seed: int = 0):
    config = tiny_config(family)
    unet = randomize_(UNet3D(config.unet), seed).eval()
    image_proj = randomize_(Resampler(config.image_proj), seed + 1).eval() if config.image_proj else None
    return config, unet, image_proj


def tiny_inputs(config: ModelConfig, frames: int = 4, batch: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    unet = config.unet
    x = torch.randn(batch, unet.in_channels, frames, 8, 8, generator=generator)
    context = torch.randn(batch, 77, unet.context_dim, generator=generator)
    clip_tokens = None
    if config.image_proj:
        clip_tokens = torch.randn(batch, 9, config.image_proj.embedding_dim, generator=generator)
    return x, torch.tensor([17, 640][:batch]), context, clip_tokens


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    yield
