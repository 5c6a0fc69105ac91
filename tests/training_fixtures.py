"""Tiny training inputs written by the tests: synthetic clips (PyAV) and init checkpoints with
a tiny UNet plus tiny VAE encoder and CLIP towers in the real key layout."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import torch

from univg_core.checkpoints import IMAGE_ENCODER_PREFIX, TEXT_PREFIX, VAE_PREFIX, save_checkpoint
from univg_core.training.clip_towers import TextTower, TowerConfig, VisionTower
from univg_core.training.vae_encoder import EncoderConfig, VAEEncoder

from conftest import randomize_, tiny_models

TEXT_WIDTH = 32  # the tiny UNet's context_dim
VISION_WIDTH = 24  # the tiny Resampler's embedding_dim


def moving_square_frames(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 [T, H, W, 3]: a bright square sliding right over a dark gradient."""
    generator = torch.Generator().manual_seed(seed)
    colour = torch.randint(200, 256, (3,), generator=generator)
    ys = torch.linspace(0, 60, height).view(height, 1, 1).expand(height, width, 3)
    video = []
    side = max(4, height // 3)
    for index in range(frames):
        frame = ys.clone()
        left = (index * max(1, width // (2 * frames))) % (width - side)
        top = height // 3
        frame[top : top + side, left : left + side] = colour.float()
        video.append(frame)
    return torch.stack(video).round().to(torch.uint8)


def write_clip(path: Path, frames: int = 12, height: int = 64, width: int = 64, fps: int = 8, seed: int = 0) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in moving_square_frames(frames, height, width, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.numpy(), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_dataset(folder: Path, clips: int = 2, frames: int = 12, size: int = 64, captions: str = "sidecar") -> Path:
    rows = [["file", "caption"]]
    for index in range(clips):
        clip = write_clip(folder / f"clip{index}.mp4", frames, size, size, seed=index)
        caption = f"a coloured square slides right, take {index}"
        if captions == "sidecar":
            clip.with_suffix(".txt").write_text(caption + "\n")
        else:
            rows.append([clip.name, caption])
    if captions == "csv":
        with open(folder / "captions.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)  # quotes the captions' commas
    return folder


def tiny_encoder_states(seed: int = 0, vision: bool = True) -> dict:
    """Prefixed VAE / text / vision weights, random but well-scaled."""
    vae = randomize_(VAEEncoder(EncoderConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)), seed)
    text = randomize_(TextTower(TowerConfig(width=TEXT_WIDTH, layers=2, mlp_width=64, context=77, vocab=49408)), seed + 1)
    extra = {
        VAE_PREFIX: vae.state_dict(),
        TEXT_PREFIX: {"model." + k: v for k, v in text.state_dict().items()},
    }
    if vision:
        tower = VisionTower(TowerConfig(width=VISION_WIDTH, layers=2, mlp_width=48, context=5, patch=14))
        extra[IMAGE_ENCODER_PREFIX] = {"model.visual." + k: v for k, v in randomize_(tower, seed + 2).state_dict().items()}
    return extra


def write_init_checkpoint(path: Path, family: str = "univg_base", seed: int = 0, zero_out: bool = True) -> Path:
    """A tiny `family` model with tiny encoders, as a .safetensors with config metadata.
    zero_out keeps the UNet's zero-initialised output layer as a real fresh fine-tune has it."""
    config, unet, image_proj = tiny_models(family, seed)
    if zero_out:
        with torch.no_grad():
            unet.out[2].weight.zero_()
            unet.out[2].bias.zero_()
    config = dataclasses.replace(config, family=family)
    save_checkpoint(path, config, unet, image_proj, extra=tiny_encoder_states(seed, vision=image_proj is not None))
    return path
