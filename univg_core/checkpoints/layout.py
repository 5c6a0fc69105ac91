"""The lvdm checkpoint layout (shared/FACTS.md section 1): which prefix holds which component,
and the error every checkpoint problem raises."""

from __future__ import annotations

UNET_PREFIX = "model.diffusion_model."
IMAGE_PROJ_PREFIX = "image_proj_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model."
IMAGE_ENCODER_PREFIX = "embedder."
SCHEDULE_KEYS = ("betas", "alphas_cumprod", "scale_arr")
METADATA_CONFIG = "univg.config"
# JSON {part: file name} for parts kept in ComfyUI's own model folders (vae, text_encoder, clip_vision)
COMPANIONS_KEY = "univg.companions"


class CheckpointError(ValueError):
    """A file that cannot become a video model; the message names the file, what was
    expected and what was found."""


def split_prefix(state: dict, prefix: str) -> dict:
    """The entries of `state` under `prefix`, with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def few(keys, count: int = 4) -> str:
    """At most `count` keys for an error message, and how many more there are."""
    keys = list(keys)
    shown = ", ".join(keys[:count])
    return shown + (f" (+{len(keys) - count} more)" if len(keys) > count else "")
