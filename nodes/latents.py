"""LATENT and IMAGE layouts around the UniVG model. LATENT samples are [frames, C, h, w] in
VAE space (ComfyUI's video convention, so core VAE Decode and previews work); the UNet works
on [1, C, frames, h, w] scaled by the model's scale_factor. VAE calls go a few frames at a time."""

from __future__ import annotations

import torch

import comfy.model_management

from ..univg_core.video import in_chunks
from .model import UniVGModel
from .progress import check_interrupt


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


def encode_images(vae, images: torch.Tensor, chunk: int = 4, after_each=None) -> torch.Tensor:
    """IMAGE [N, H, W, 3+] in [0, 1] -> VAE-space latents [N, C, h, w], `chunk` frames per call."""
    return in_chunks(lambda part: vae.encode(part[..., :3]).float(), images, chunk, check_interrupt, after_each)


def decode_latents(vae, samples: torch.Tensor, chunk: int = 4, after_each=None) -> torch.Tensor:
    """VAE-space latents [T, C, h, w] -> IMAGE [T, H, W, 3], `chunk` frames per call."""
    images = in_chunks(lambda part: vae.decode(part).float(), samples, chunk, check_interrupt, after_each)
    return images.reshape(-1, *images.shape[-3:])


def pixels_to_model_latent(vae, images: torch.Tensor, model: UniVGModel, chunk: int = 4) -> torch.Tensor:
    """IMAGE [N, H, W, 3] in [0, 1] -> [1, C, N, h, w] model-space latent."""
    latent = encode_images(vae, images, chunk)
    return to_model_latent(latent, model, latent.device)


def model_space_encoder(vae, model: UniVGModel, device):
    """A univg_core Codec: pixels [n, 3, H, W] in [-1, 1] -> model-space latents [n, C, h, w]."""
    scale = model.config.schedule.scale_factor

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        images = ((pixels + 1) / 2).clamp(0, 1).movedim(1, -1)
        return vae.encode(images).float().to(device) * scale

    return encode
