"""Checkpoint files: the open lvdm checkpoints (VideoCrafter1/2, DynamiCrafter) and UniVG's
own files, loaded key-for-key with the UNet configuration read from the tensors.

- layout: the key prefixes of each component, CheckpointError, split_prefix
- files: reading .ckpt / .safetensors safely
- detection: UNet / family / Resampler configuration from key names and shapes
- configuration: the ModelConfig from metadata or detection, plus the caller's overrides
- loading: load_checkpoint
- saving: save_checkpoint in the original layout with the config as metadata
"""

from .detection import infer_family, infer_resampler_config, infer_unet_config
from .files import non_finite_tensors, read_state_dict
from .layout import (
    COMPANIONS_KEY,
    IMAGE_ENCODER_PREFIX,
    IMAGE_PROJ_PREFIX,
    METADATA_CONFIG,
    TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    CheckpointError,
    split_prefix,
)
from .loading import LoadedCheckpoint, load_checkpoint
from .saving import checkpoint_state_dict, config_metadata, save_checkpoint

__all__ = [
    "COMPANIONS_KEY", "IMAGE_ENCODER_PREFIX", "IMAGE_PROJ_PREFIX", "METADATA_CONFIG", "TEXT_PREFIX", "UNET_PREFIX", "VAE_PREFIX",
    "CheckpointError", "LoadedCheckpoint", "checkpoint_state_dict", "config_metadata", "infer_family", "non_finite_tensors",
    "infer_resampler_config", "infer_unet_config", "load_checkpoint", "read_state_dict", "save_checkpoint",
    "split_prefix",
]
