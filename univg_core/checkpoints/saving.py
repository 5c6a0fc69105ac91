"""Writing UniVG files: the original lvdm key layout in .safetensors, with the model's
configuration in the metadata so the loader needs no inference."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import torch

from ..configs import ModelConfig
from ..models.image_proj import Resampler
from ..models.unet3d import UNet3D
from .layout import IMAGE_PROJ_PREFIX, METADATA_CONFIG, UNET_PREFIX

def checkpoint_state_dict(
    unet: UNet3D, image_proj: Optional[Resampler] = None, extra: Optional[dict[str, dict]] = None
) -> dict[str, torch.Tensor]:
    """The original key layout: `model.diffusion_model.*`, `image_proj_model.*`, plus
    `extra` component state dicts keyed by their prefix (e.g. 'first_stage_model.')."""
    state = {UNET_PREFIX + key: value for key, value in unet.state_dict().items()}
    if unet.config.fs_condition and unet.config.fps_embedding_key != "fps_embedding":
        state = {k.replace(UNET_PREFIX + "fps_embedding.", UNET_PREFIX + unet.config.fps_embedding_key + "."): v for k, v in state.items()}
    if image_proj is not None:
        state.update({IMAGE_PROJ_PREFIX + key: value for key, value in image_proj.state_dict().items()})
    for prefix, component in (extra or {}).items():
        state.update({prefix + key: value for key, value in component.items()})
    return state


def config_metadata(config: ModelConfig) -> dict[str, str]:
    return {METADATA_CONFIG: json.dumps(dataclasses.asdict(config)), "univg.family": config.family}


def save_checkpoint(
    path: str | os.PathLike,
    config: ModelConfig,
    unet: UNet3D,
    image_proj: Optional[Resampler] = None,
    extra: Optional[dict[str, dict]] = None,
    metadata: Optional[dict[str, str]] = None,
) -> None:
    """Write `.safetensors` (with the config as metadata) in the original key layout."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in checkpoint_state_dict(unet, image_proj, extra).items()}
    save_file(state, str(path), metadata={**config_metadata(config), **(metadata or {})})
