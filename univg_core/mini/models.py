"""UniVG Mini's model configurations and its starting checkpoint.

The same module graph as the full UniVG models (UNet3D with spatial and temporal transformers,
Multi-condition Cross Attention, the image Resampler) at a size a 2-core CPU trains: two UNet
levels of 32 and 64 channels on 8x8 latents (64x64 pixels through the Mini VAE), 8 frames.
The text context is the full SD2 text encoder's 1024 wide tokens and the image tokens come
from the full ViT-H/14 vision tower (1280 wide), both fixed random towers (`towers.py`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..checkpoints import (COMPANIONS_KEY, IMAGE_PROJ_PREFIX, config_metadata, load_checkpoint, read_state_dict,
                           save_checkpoint)
from ..configs import ModelConfig, ResamplerConfig, ScheduleConfig, get_preset
from ..files import write_atomically
from ..models.image_proj import Resampler
from ..models.unet3d import UNet3D
from .towers import TEXT_FILE, TEXT_WIDTH, VISION_FILE, VISION_WIDTH

FRAMES = 8
SIZE = 64  # pixels of F_B and F_A; F_SR renders twice that
FPS = 8
# the shipped files, in WEIGHTS_DIR
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
VAE_FILE = "univg_mini_vae.safetensors"
BASE_FILE = "univg_mini_base.safetensors"  # F_B, text-to-video
BASE_IMAGE_FILE = "univg_mini_base_image.safetensors"  # F_B that reads a first frame too
FIRST_FRAME_FILE = "univg_mini_first_frame.safetensors"  # the text-to-image model of the two-stage route
ANIMATION_FILE = "univg_mini_animation.safetensors"  # F_A
SR_FILE = "univg_mini_sr.safetensors"  # F_SR
INTERPOLATION_FILE = "univg_mini_interpolation.safetensors"  # F_I: first + last frame
INTERPOLATION_NO_BGN_FILE = "univg_mini_interpolation_no_bgn.safetensors"
ANIMATION_NO_BGN_FILE = "univg_mini_animation_no_bgn.safetensors"  # the ablation's twins
SR_NO_BGN_FILE = "univg_mini_sr_no_bgn.safetensors"
SR_VAE_FILE = "univg_mini_sr_vae.safetensors"  # F_SR's own VAE: it draws the world's pixel patterns at 128x128
VAE_FILES = (VAE_FILE, SR_VAE_FILE)  # beside the UNets in the pack, but not checkpoints: they go to models/vae
# The Mini's F_A guides its text at t >= this only (the samplers' guidance_from_t; w_T 1 below): in the
# Mini VAE's latents full guidance walks an object's hue (blue -> purple). Decided on a fresh, fixed set
# (every caption of the world x seeds 11 and 12): the two-stage route followed 362 of 450 captions
# against 313 (docs/univg_mini_findings.md). The nodes keep the paper's 0 as their default.
ANIMATION_GUIDANCE_FROM_T = 300

# The Mini's F_SR guides its text with this weight (the upscaler's text_weight), chosen on held-out clips of
# its own seed by the rule in docs/univg_mini_findings.md ("Mini v2"). The node keeps 7.5 as its default.
SR_TEXT_WEIGHT = 3.0

# The Mini's F_I guides its text with this weight (from ANIMATION_GUIDANCE_FROM_T) in the keyframe
# interpolation workflow, chosen on held-out keyframe pairs of its own seed by the rule in
# docs/univg_mini_findings.md ("F_I's text guidance"). The nodes keep 7.5 as their default.
INTERPOLATION_TEXT_WEIGHT = 3.0

MINI_UNET = dict(
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(1, 2),
    num_head_channels=32,
    norm_groups=16,
    context_dim=TEXT_WIDTH,
    temporal_length=FRAMES,
    addition_attention_heads=4,
    default_fs=FPS,
)
MINI_RESAMPLER = ResamplerConfig(
    dim=128, depth=1, dim_head=64, heads=2, num_queries=8, embedding_dim=VISION_WIDTH, output_dim=TEXT_WIDTH,
    ff_mult=2, video_length=None,
)


def mini_base_config(scale_factor: float) -> ModelConfig:
    """F_B of UniVG Mini: the `univg_base` family (text and image through MCA), one set of
    image tokens shared by every frame; `scale_factor` maps the Mini VAE's latents to unit size.

    Unlike the paper's F_B (eps-prediction, SD's schedule, offset noise 0.1) it predicts v on a
    zero-terminal-SNR schedule: the Mini's latents carry the background in their per-channel
    means, which SD's schedule leaves readable at t = 999 (sqrt(abar) = 0.068). A model trained
    that way took its background and colour from that residual instead of the caption, and from
    pure noise drew dark backgrounds and unrelated frames (measured: 10-20% of captions followed
    after 1500 steps). With zero terminal SNR, x_999 holds nothing but noise in training too."""
    base = get_preset("univg_base")
    unet = dataclasses.replace(base.unet, **MINI_UNET, image_tokens_per_frame=None)
    schedule = dataclasses.replace(ScheduleConfig(), scale_factor=scale_factor, zero_terminal_snr=True,
                                   timestep_spacing="uniform_trailing")
    return dataclasses.replace(base, unet=unet, image_proj=MINI_RESAMPLER, schedule=schedule, prediction="v")


def latent_scale_factor(latents: torch.Tensor) -> float:
    """1 / the standard deviation of raw VAE latents (SD's 0.18215 is this number for its VAE),
    rounded to 4 significant digits so it reads well in the metadata."""
    return float(f"{1 / latents.float().std(correction=0).item():.4g}")


def write_base_init(path: str | Path, scale_factor: float, seed: int = 0, relative_position: bool = False) -> ModelConfig:
    """A fresh F_B (random UNet and Resampler, zero output layer as lvdm initialises it): the
    --init of `python -m univg_core.cli.train --task base`. The Mini's VAE and towers live in
    their own files (ComfyUI's VAELoader, CLIPLoader and CLIPVisionLoader read them).
    relative_position: temporal attention with VideoCrafter1's relative-position terms (an
    experiment; the shipped F_B has none, as VideoCrafter2)."""
    config = mini_base_config(scale_factor)
    if relative_position:
        config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, use_relative_position=True))
    torch.manual_seed(seed)
    unet = UNet3D(config.unet)
    image_proj = Resampler(config.image_proj)
    save_checkpoint(path, config, unet, image_proj, metadata={"univg.mini": "initial weights", **companions_metadata()})
    return config


def companions_metadata(vae_file: str = VAE_FILE) -> dict[str, str]:
    """The Mini's VAE and towers by file name: the UniVG Checkpoint Loader finds them in
    ComfyUI's models/vae, models/text_encoders and models/clip_vision."""
    parts = {"vae": vae_file, "text_encoder": TEXT_FILE, "clip_vision": VISION_FILE}
    return {COMPANIONS_KEY: json.dumps(parts)}


def companion_vae(metadata: dict[str, str]) -> str:
    """The VAE file a Mini model's metadata names (the Mini VAE for files that name none)."""
    return json.loads(metadata.get(COMPANIONS_KEY, "{}")).get("vae", VAE_FILE)


def write_with_vae(source: str | Path, out: str | Path, vae_file: str, scale_factor: float) -> ModelConfig:
    """`source` with another VAE: its latent scale factor and companion VAE replaced, the weights
    unchanged (the start of a model fine-tuned in that VAE's latents)."""
    from safetensors.torch import save_file

    state, metadata = read_state_dict(source)
    config = load_checkpoint(source).config
    config = dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, scale_factor=scale_factor))
    metadata = {**metadata, **config_metadata(config), **companions_metadata(vae_file)}
    write_atomically(out, lambda partial: save_file(state, str(partial), metadata=metadata))
    return config


def parameter_count(config: ModelConfig) -> int:
    with torch.device("meta"):
        unet = UNet3D(config.unet)
        image_proj = Resampler(config.image_proj) if config.image_proj is not None else None
    modules = [unet] + ([image_proj] if image_proj is not None else [])
    return sum(p.numel() for module in modules for p in module.parameters())


IMAGE_BRANCH_KEYS = (".to_k_ip.", ".to_v_ip.")


def write_text_only(source: str | Path, out: str | Path) -> ModelConfig:
    """`source`, trained with its image branch silenced (the training CLI's --no-image-tokens
    leaves every to_v_ip at zero, so image tokens add exactly nothing), written without that
    branch: plain text cross attention and no Resampler, the same outputs in a file 2.3 MB
    smaller for the Mini. Raises if an image projection is not zero: dropping it would change
    the model."""
    from safetensors.torch import save_file

    state, metadata = read_state_dict(source)
    live = [key for key in state if ".to_v_ip." in key and state[key].any()]
    if live:
        raise ValueError(f"{source}: the image branch is in use ({live[0]} is not zero); it cannot be dropped")
    kept = {key: value for key, value in state.items()
            if not key.startswith(IMAGE_PROJ_PREFIX) and not any(part in key for part in IMAGE_BRANCH_KEYS)}
    config = load_checkpoint(source).config
    config = dataclasses.replace(config, image_proj=None,
                                 unet=dataclasses.replace(config.unet, image_cross_attention=False))
    # atomic: train_mini takes a file that is there for a finished stage
    write_atomically(out, lambda partial: save_file(kept, str(partial), metadata={**metadata, **config_metadata(config)}))
    return config
