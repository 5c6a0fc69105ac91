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


def tile_overlap(tile: int) -> int:
    """Pixels two neighbouring VAE tiles share (ComfyUI feathers them together): a quarter of a tile."""
    return tile // 4


def encode_images(vae, images: torch.Tensor, chunk: int = 4, after_each=None, tile: int = 0) -> torch.Tensor:
    """IMAGE [N, H, W, 3+] in [0, 1] -> VAE-space latents [N, C, h, w], `chunk` frames per call;
    tile > 0: each frame in spatial tiles of `tile` pixels (ComfyUI's tiled encode)."""

    def encode(part: torch.Tensor) -> torch.Tensor:
        pixels = part[..., :3]
        if tile and max(pixels.shape[1:3]) > tile:
            return vae.encode_tiled(pixels, tile_x=tile, tile_y=tile, overlap=tile_overlap(tile)).float()
        return vae.encode(pixels).float()

    return in_chunks(encode, images, chunk, check_interrupt, after_each)


def decode_latents(vae, samples: torch.Tensor, chunk: int = 4, after_each=None, tile: int = 0) -> torch.Tensor:
    """VAE-space latents [T, C, h, w] -> IMAGE [T, H, W, 3], `chunk` frames per call; tile > 0:
    each frame in spatial tiles of `tile` pixels (ComfyUI's tiled decode)."""

    def decode(part: torch.Tensor) -> torch.Tensor:
        if tile:
            latent_tile = tile // vae.spacial_compression_decode()
            if max(part.shape[-2:]) > latent_tile:
                return vae.decode_tiled(part, tile_x=latent_tile, tile_y=latent_tile,
                                        overlap=tile_overlap(latent_tile)).float()
        return vae.decode(part).float()

    images = in_chunks(decode, samples, chunk, check_interrupt, after_each)
    return images.reshape(-1, *images.shape[-3:])


def pixels_to_model_latent(vae, images: torch.Tensor, model: UniVGModel, chunk: int = 4) -> torch.Tensor:
    """IMAGE [N, H, W, 3] in [0, 1] -> [1, C, N, h, w] model-space latent."""
    latent = encode_images(vae, images, chunk)
    return to_model_latent(latent, model, latent.device)


def model_space_encoder(vae, model: UniVGModel, device, tile: int = 0):
    """A univg_core Codec: pixels [n, 3, H, W] in [-1, 1] -> model-space latents [n, C, h, w];
    tile > 0: frames larger than that in spatial tiles of `tile` pixels."""
    scale = model.config.schedule.scale_factor

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        images = ((pixels + 1) / 2).clamp(0, 1).movedim(1, -1)
        return encode_images(vae, images, chunk=images.shape[0], tile=tile).to(device) * scale

    return encode
