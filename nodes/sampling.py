"""What the three sampler nodes share: guidance assembly from ComfyUI conditioning,
progress and interrupt, latent layout conversions. LATENT samples are [frames, C, h, w]
in VAE space (ComfyUI's video convention, so core VAE Decode and previews work); the
UNet works on [1, C, frames, h, w] scaled by the model's scale_factor."""

from __future__ import annotations

import logging

import torch

import comfy.model_management
import comfy.utils

from ..univg_core.diffusion.guidance import Condition, make_guided_denoiser, unet_model_fn
from .conditioning import IMAGE_TOKENS, NULL_IMAGE_TOKENS, first_entry
from .model import UniVGModel

log = logging.getLogger("univg")
SAMPLERS = ["dpmpp_2m", "ddim"]


def check_interrupt() -> None:
    comfy.model_management.throw_exception_if_processing_interrupted()


def progress(total: int):
    """A sampler callback: ComfyUI progress bar plus interrupt check at every step."""
    bar = comfy.utils.ProgressBar(total)

    def callback(step: int, steps: int, x: torch.Tensor, x0: torch.Tensor) -> None:
        check_interrupt()
        bar.update_absolute(step + 1, steps)

    return callback


def check_size(width: int, height: int, multiple: int = 64) -> None:
    if width % multiple or height % multiple or width < multiple or height < multiple:
        raise ValueError(
            f"width and height must be positive multiples of {multiple}, got {width}x{height} "
            f"(put an Image Scale node before, or pick e.g. 512x320, 576x320, 1280x720)"
        )


def text_tokens(conditioning, what: str, model: UniVGModel, device, dtype) -> torch.Tensor:
    tokens, _ = first_entry(conditioning, what)
    width = model.unet.config.context_dim
    if tokens.shape[-1] != width:
        raise ValueError(
            f"the {what} text conditioning is {tokens.shape[-1]}-wide; this model needs {width} "
            f"(OpenCLIP ViT-H, the SD2 text encoder): encode the prompt with the UniVG loader's CLIP"
        )
    return tokens.to(device=device, dtype=dtype)


def guided_denoiser(
    model: UniVGModel, positive, negative, w_text: float, w_image: float, fps: int, device, use_image: bool = True
):
    """UniVG guidance V = F(0) + w_T (F(T) - F(0)) + w_I (F(I) - F(0)) over this model, with
    F(0) = (negative text, null image), F(T) = (positive text, null image), F(I) = (negative text, image)."""
    dtype = model.unet.dtype
    positive_text = text_tokens(positive, "positive", model, device, dtype)
    negative_text = text_tokens(negative, "negative", model, device, dtype)
    _, extras = first_entry(positive, "positive")
    image_tokens = extras.get(IMAGE_TOKENS) if use_image else None
    null_image = image = None
    if image_tokens is not None and not model.has_image_branch:
        log.warning("UniVG: this model has no image cross-attention; the image conditioning is ignored")
    elif image_tokens is not None:
        with torch.no_grad():
            image = model.image_proj(image_tokens.to(device=device, dtype=dtype))
            null_image = model.image_proj(extras[NULL_IMAGE_TOKENS].to(device=device, dtype=dtype))
    if image is None:
        w_image = 0.0
    conditions = {
        "null": Condition(negative_text, null_image),
        "text": Condition(positive_text, null_image),
        "image": Condition(negative_text, image),
    }

    unet_call = unet_model_fn(model.unet, fs=fps)

    def interruptible(x, t, text, image_context):
        check_interrupt()
        return unet_call(x, t, text, image_context)

    return make_guided_denoiser(
        interruptible, "multi", conditions, w_text, w_image, guidance_rescale=model.config.guidance_rescale
    )


def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)


def to_model_latent(samples: torch.Tensor, model: UniVGModel, device) -> torch.Tensor:
    """LATENT samples [T, C, h, w] (VAE space) -> [1, C, T, h, w] model space."""
    if samples.ndim != 4 or samples.shape[1] != model.latent_channels:
        raise ValueError(
            f"expected a LATENT of frames [T, {model.latent_channels}, h, w], got {list(samples.shape)}"
        )
    scale = model.config.schedule.scale_factor
    return (samples.to(device=device, dtype=torch.float32) * scale).transpose(0, 1).unsqueeze(0)


def to_latent_output(video: torch.Tensor, model: UniVGModel, **extra) -> dict:
    """[1, C, T, h, w] model space -> LATENT {"samples": [T, C, h, w]} in VAE space."""
    scale = model.config.schedule.scale_factor
    samples = (video[0].transpose(0, 1) / scale).float().to(comfy.model_management.intermediate_device())
    return {"samples": samples.contiguous(), **extra}


def pixels_to_model_latent(vae, images: torch.Tensor, model: UniVGModel, chunk: int = 4) -> torch.Tensor:
    """IMAGE [N, H, W, 3] in [0, 1] -> [1, C, N, h, w] model-space latent, `chunk` frames at a time."""
    parts = []
    for start in range(0, images.shape[0], chunk):
        check_interrupt()
        parts.append(vae.encode(images[start : start + chunk, :, :, :3]).float())
    latent = torch.cat(parts)
    return to_model_latent(latent, model, latent.device)
