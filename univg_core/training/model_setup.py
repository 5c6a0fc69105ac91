"""Turn an init checkpoint into the model a task trains: check it suits the task, widen the
input convolution for F_A, and describe the result (family, prediction, BGN window, schedule)
in the config that is saved with the weights."""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn as nn

from ..diffusion.bgn import check_window
from ..checkpoints import LoadedCheckpoint, split_prefix
from ..configs import ModelConfig
from ..models.image_proj import Resampler
from ..models.unet3d import UNet3D, expand_input_channels
from .objective import TaskSpec


class TrainingSetupError(ValueError):
    pass


class TrainedNetwork(nn.Module):
    """UNet plus the image Resampler: one module for the optimiser and DDP."""

    def __init__(self, unet: UNet3D, image_proj: Optional[Resampler]):
        super().__init__()
        self.unet = unet
        self.image_proj = image_proj

    def forward(self, x, t, text, image_features=None, fs=None):
        image = None
        if self.image_proj is not None and image_features is not None:
            image = self.image_proj(image_features)
        return self.unet(x, t, context=text, fs=fs, image_context=image)


def bgn_window(spec: TaskSpec, t_m: Optional[int], t_n: Optional[int], timesteps: int) -> Optional[tuple[int, int]]:
    if spec.bgn_window is None:
        if t_m is not None or t_n is not None:
            raise TrainingSetupError(f"the {spec.name} task trains without BGN; t_m/t_n apply to animation and sr only")
        return None
    window = (spec.bgn_window[0] if t_m is None else t_m, spec.bgn_window[1] if t_n is None else t_n)
    try:
        check_window(*window, timesteps)
    except ValueError as error:
        raise TrainingSetupError(f"{spec.name}: {error}") from None
    return window


def target_config(init: ModelConfig, spec: TaskSpec, window, zero_terminal_snr: bool, name: str) -> ModelConfig:
    channels = init.unet.in_channels
    wanted = "4 (a text-to-video base" + (", or 8 from an earlier animation fine-tune)" if spec.concat_first_frame else ")")
    if channels != 4 and not (spec.concat_first_frame and channels == 8):
        raise TrainingSetupError(
            f"{name}: a {init.family} checkpoint has {channels} input channels; the {spec.name} task starts from "
            f"{wanted}"
        )
    schedule = dataclasses.replace(init.schedule, zero_terminal_snr=zero_terminal_snr or init.schedule.zero_terminal_snr,
                                   scale_base=None)  # the fine-tune trains on unscaled latents
    highest = window[1] if window else schedule.timesteps - 1
    if schedule.zero_terminal_snr and spec.prediction == "eps" and highest == schedule.timesteps - 1:
        raise TrainingSetupError(
            f"{spec.name}: zero terminal SNR with eps-prediction cannot denoise the last timestep; train v-prediction "
            "(the sr task) or keep the schedule"
        )
    return dataclasses.replace(
        init,
        family=spec.family,
        unet=dataclasses.replace(init.unet, in_channels=8 if spec.concat_first_frame else 4),
        prediction=spec.prediction,
        schedule=schedule,
        bgn_t_m=window[0] if window else None,
        bgn_t_n=window[1] if window else None,
    )


IMAGE_BRANCH_PARAMETERS = ("to_k_ip.", "to_v_ip.", ".alpha")


def build_network(loaded: LoadedCheckpoint, config: ModelConfig, uses_image: bool,
                  silence_image_branch: bool = False) -> TrainedNetwork:
    """The trainable module. Where the task trains without image tokens (sr), the image branch
    (Resampler, to_k_ip/to_v_ip, alpha) is kept but frozen: the weights stay in the file and
    DDP sees no parameter without a gradient. `silence_image_branch` also zeroes to_v_ip, so the
    result ignores image tokens it never learned to read (and a later image fine-tune starts
    from the text-only model)."""
    unet = expand_input_channels(loaded.unet.float(), config.unet.in_channels)
    unet.config = config.unet
    image_proj = loaded.image_proj.float() if loaded.image_proj is not None else None
    model = TrainedNetwork(unet, image_proj)
    if not uses_image:
        for name, parameter in model.named_parameters():
            if name.startswith("image_proj.") or any(part in name for part in IMAGE_BRANCH_PARAMETERS):
                parameter.requires_grad_(False)
                if silence_image_branch and "to_v_ip." in name:
                    with torch.no_grad():
                        parameter.zero_()
    return model


def network_from_state(config: ModelConfig, state: dict, dtype: torch.dtype) -> tuple[UNet3D, Optional[Resampler]]:
    """UNet and Resampler holding a gathered `TrainedNetwork` state dict (no copy on the way in)."""
    with torch.device("meta"):
        unet = UNet3D(config.unet)
        image_proj = Resampler(config.image_proj) if config.image_proj is not None else None
    unet.load_state_dict({k: v.to(dtype) for k, v in split_prefix(state, "unet.").items()}, assign=True)
    if image_proj is not None:
        image_proj.load_state_dict({k: v.to(dtype) for k, v in split_prefix(state, "image_proj.").items()}, assign=True)
    return unet, image_proj


def uses_image_branch(spec: TaskSpec, loaded: LoadedCheckpoint) -> bool:
    return spec.uses_image and loaded.config.unet.image_cross_attention and loaded.image_proj is not None


def check_text_width(loaded: LoadedCheckpoint, text_width: int) -> None:
    if text_width != loaded.config.unet.context_dim:
        raise TrainingSetupError(
            f"{loaded.path}: the text encoder gives {text_width}-wide tokens but the UNet's cross attention takes "
            f"{loaded.config.unet.context_dim}"
        )


