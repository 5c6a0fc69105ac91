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
from univg_core.models.image_proj import Resampler  # noqa: E402
from univg_core.models.operations import TORCH_OPERATIONS  # noqa: E402
from univg_core.models.unet3d import UNet3D  # noqa: E402

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


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """L2 of the difference over L2 of `expected`, in float32."""
    return ((got.float() - expected.float()).norm() / expected.float().norm()).item()


def tiny_config(family: str) -> ModelConfig:
    return get_preset(f"tiny_{family}")


def tiny_models(family: str, seed: int = 0, operations=TORCH_OPERATIONS):
    """(config, UNet3D, Resampler or None), layers from `operations` (e.g. comfy.ops in host tests)."""
    config = tiny_config(family)
    unet = randomize_(UNet3D(config.unet, operations), seed).eval()
    image_proj = randomize_(Resampler(config.image_proj, operations), seed + 1).eval() if config.image_proj else None
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


# ------------------------------------------------------------------ the ComfyUI host

HOST_CHECKPOINTS = {  # workflow checkpoint name -> test file
    "videocrafter2_t2v_512.ckpt": "t2v.safetensors",
    "univg_sr.safetensors": "t2v.safetensors",  # a text-only 4-channel model stands in for F_SR
    "univg_base.safetensors": "base.safetensors",
    "dynamicrafter_512.ckpt": "animation.safetensors",
    "dynamicrafter_512_interp.ckpt": "animation.safetensors",  # same keys: the interp file is DynamiCrafter 512's
    "univg_animation.safetensors": "animation.safetensors",
    "image_model": "sd_like_unet.ckpt",
    "corrupted": "corrupted.ckpt",
}
DEMO_FAMILIES = {"t2v.safetensors": "videocrafter2_t2v_512", "base.safetensors": "univg_base",
                 "animation.safetensors": "univg_animation"}


def pytest_configure(config):
    config.addinivalue_line("markers", "host: runs on the real ComfyUI host (scripts/build_host.sh)")


def pytest_collection_modifyitems(config, items):
    # the host imports ComfyUI into this process: run its tests after the pure-PyTorch ones
    items.sort(key=lambda item: item.get_closest_marker("host") is not None)


def _fixture_cache():
    import hashlib
    import shutil
    from pathlib import Path

    sources = [Path(ROOT) / "tools" / "demo_checkpoint.py", Path(ROOT) / "univg_core" / "configs.py"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    folder = Path(ROOT) / ".cache" / "test_models" / digest
    for stale in folder.parent.glob("*"):  # files for older sources: 5 GB each
        if stale.is_dir() and stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def checkpoints():
    import dataclasses

    from tools.demo_checkpoint import write_demo_checkpoint

    folder = _fixture_cache()
    for name, family in DEMO_FAMILIES.items():
        if not (folder / name).exists():
            partial = folder / f"partial_{name}"  # same suffix: the suffix picks the file format
            write_demo_checkpoint(str(partial), family)
            partial.rename(folder / name)
    image_only = dataclasses.replace(
        get_preset("tiny_videocrafter2_t2v_512").unet,
        temporal_conv=False, temporal_attention=False, addition_attention=False, fs_condition=False,
    )
    if not (folder / "sd_like_unet.ckpt").exists():
        state = {"model.diffusion_model." + k: v for k, v in randomize_(UNet3D(image_only)).state_dict().items()}
        torch.save({"state_dict": state}, folder / "sd_like_unet.ckpt")
    data = (folder / "sd_like_unet.ckpt").read_bytes()
    (folder / "corrupted.ckpt").write_bytes(data[: len(data) // 3])
    return {"folder": folder, **HOST_CHECKPOINTS}


@pytest.fixture(scope="session")
def host(tmp_path_factory, checkpoints):
    from pathlib import Path

    from PIL import Image

    from host_harness import InProcessHost
    from tools.comfy_host import prepare_base
    from tools.main_job import example_image

    base = prepare_base(tmp_path_factory.mktemp("comfy_base"))
    for path in Path(checkpoints["folder"]).iterdir():
        if not path.name.startswith("partial_"):
            (base / "models" / "univg" / path.name).symlink_to(path)
    example_image(base / "input" / "univg_example.png")
    example_image(base / "input" / "univg_example_last.png", last=True)
    Image.new("RGB", (100, 70), (200, 30, 30)).save(base / "input" / "odd_size.png")
    _started_hosts.append(InProcessHost(base))
    return _started_hosts[-1]


_started_hosts: list = []


@pytest.fixture(scope="module", autouse=True)
def release_host_between_modules():
    """After each test module, the in-process host lets go of the models its prompts loaded
    and the module's fixtures drop theirs: one module's models never sit under the next's."""
    yield
    import gc

    from host_harness import release_free_memory

    for started in _started_hosts:
        started.release()
    gc.collect()
    release_free_memory()


@pytest.fixture(scope="module")
def renderer():
    """UniVG Mini's renderer over the shipped VAE and the seeded text tower (built once, then kept)."""
    from univg_core.cli.install_mini import WEIGHTS
    from univg_core.mini import models, towers
    from univg_core.mini.render import MiniRenderer
    from pathlib import Path

    cache = Path(__file__).resolve().parent.parent / ".cache" / "mini" / "towers"
    text_file, _ = towers.write_towers(cache, cache)
    return MiniRenderer(text_file, WEIGHTS / models.VAE_FILE)
