"""load_checkpoint: a checkpoint file -> UNet3D + Resampler (built strictly on the meta device,
so nothing is half-loaded) and the state dicts of the VAE and CLIP towers it carries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..configs import ModelConfig, ScheduleConfig, UNetConfig
from ..models.image_proj import Resampler
from ..models.operations import TORCH_OPERATIONS
from ..models.unet3d import UNet3D
from .configuration import resolve_config
from .files import non_finite_tensors, read_state_dict
from .layout import (
    IMAGE_ENCODER_PREFIX,
    IMAGE_PROJ_PREFIX,
    SCHEDULE_KEYS,
    TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    CheckpointError,
    few,
    split_prefix,
)

# DynamiCrafter-256 names the frame-stride embedding differently; the module is the same
RENAMED_UNET_PREFIXES = {"framestride_embed.": "fps_embedding."}


@dataclass
class LoadedCheckpoint:
    path: str
    config: ModelConfig
    unet: UNet3D
    image_proj: Optional[Resampler]
    alphas_cumprod: Optional[torch.Tensor] = None  # as stored in the file, when it is
    vae_state_dict: dict = field(default_factory=dict)
    text_encoder_state_dict: dict = field(default_factory=dict)
    image_encoder_state_dict: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def prediction(self) -> str:
        return self.config.prediction

    @property
    def schedule(self) -> ScheduleConfig:
        return self.config.schedule


def _check_head_width(unet: UNetConfig, name: str) -> None:
    widths = {unet.model_channels * mult for mult in unet.channel_mult}
    bad = sorted(w for w in widths if w % unet.num_head_channels)
    if bad:
        raise CheckpointError(
            f"{name}: num_head_channels={unet.num_head_channels} does not divide {bad[0]} channels; "
            f"the published models use 64 - pass num_head_channels=... for this file"
        )


def _build_strict(module_factory, state: dict, name: str, what: str, prefix: str) -> nn.Module:
    """Build on the meta device, compare every key and shape, then assign the file's
    tensors: a mismatch raises before anything is half-loaded."""
    with torch.device("meta"):
        module = module_factory()
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{prefix}{key} {list(state[key].shape)} (expected {list(shape)})"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {few(prefix + k for k in missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {few(prefix + k for k in unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} tensors of the wrong shape: {few(wrong, 3)}")
    if problems:
        raise CheckpointError(f"{name}: the {what} does not match its inferred configuration; " + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=True)
    return module


def _unet_state(state: dict, name: str) -> dict:
    unet_state = split_prefix(state, UNET_PREFIX)
    if not unet_state and "input_blocks.0.0.weight" in state:  # a bare UNet state dict
        unet_state = {k: v for k, v in state.items() if not k.startswith((IMAGE_PROJ_PREFIX, VAE_PREFIX))}
    if not unet_state:
        prefixes = sorted({key.split(".")[0] for key in state})
        raise CheckpointError(
            f"{name}: no video UNet found: expected keys starting with '{UNET_PREFIX}'; found top-level "
            f"prefixes: {few(prefixes, 6)}"
        )
    return unet_state


def _renamed(unet_state: dict) -> dict:
    renamed = {}
    for key, value in unet_state.items():
        for old, new in RENAMED_UNET_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        renamed[key] = value
    return renamed


def load_checkpoint(
    path: str | os.PathLike,
    dtype: Optional[torch.dtype] = None,
    device: str | torch.device = "cpu",
    operations=TORCH_OPERATIONS,
    **overrides,
) -> LoadedCheckpoint:
    """Load a video diffusion checkpoint, its layers built from `operations` (torch.nn, or a
    host's casting layers: models/operations.py). `overrides` set what the tensors cannot tell:
    ModelConfig fields (family, prediction, ...), UNetConfig fields (num_head_channels,
    temporal_length, ...), ScheduleConfig fields, and `resampler_<field>`."""
    path = Path(path)
    name = path.name
    state, metadata = read_state_dict(path)
    unet_state = _unet_state(state, name)
    image_proj_state = split_prefix(state, IMAGE_PROJ_PREFIX)
    schedule_state = {key: state[key] for key in SCHEDULE_KEYS if key in state}
    config = resolve_config(unet_state, image_proj_state, schedule_state, metadata, overrides, name)
    damaged = non_finite_tensors({**unet_state, **image_proj_state, **split_prefix(state, VAE_PREFIX)})
    if damaged:
        raise CheckpointError(f"{name}: the file is damaged: {damaged} hold NaN/inf (UNet, image_proj or VAE)")

    _check_head_width(config.unet, name)
    unet = _build_strict(lambda: UNet3D(config.unet, operations), _renamed(unet_state), name, "UNet", UNET_PREFIX)
    image_proj = None
    if image_proj_state:
        image_proj = _build_strict(
            lambda: Resampler(config.image_proj, operations), image_proj_state, name, "image_proj_model", IMAGE_PROJ_PREFIX
        )
    for module in (unet, image_proj):
        if module is not None:
            module.to(device=device, dtype=dtype).eval()
    return LoadedCheckpoint(
        path=str(path),
        config=config,
        unet=unet,
        image_proj=image_proj,
        alphas_cumprod=schedule_state.get("alphas_cumprod"),
        vae_state_dict=split_prefix(state, VAE_PREFIX),
        text_encoder_state_dict=split_prefix(state, TEXT_PREFIX),
        image_encoder_state_dict=split_prefix(state, IMAGE_ENCODER_PREFIX),
        metadata=metadata,
    )
