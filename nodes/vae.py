"""Video VAE decode/encode: frame-chunked so memory stays bounded, with progress and
interrupt. IMAGE batches are frames; LATENT samples are [frames, C, h, w]."""

from __future__ import annotations

import torch

from .latents import decode_latents, encode_images
from .progress import chunk_progress


def check_decoded(images: torch.Tensor) -> None:
    """Finite latents that decode to NaN/inf, or to one flat value everywhere, mean a damaged VAE:
    an error, never a black video."""
    if not torch.isfinite(images).all():
        raise ValueError("UniVG Video VAE Decode: the VAE turned finite latents into NaN/inf: its weights are "
                         "damaged or it is not this model's VAE; reload or restore the VAE file")
    if images.numel() > 1 and bool((images == images.reshape(-1)[0]).all()):
        raise ValueError(f"UniVG Video VAE Decode: every pixel of every frame decoded to {float(images.reshape(-1)[0]):g}: "
                         "the VAE's weights are damaged or it is not this model's VAE; reload or restore the VAE file")


def check_tile_size(tile_size: int) -> None:
    if tile_size and (tile_size < 64 or tile_size % 32):
        raise ValueError(f"tile_size must be 0 (whole frames) or a multiple of 32 from 64 pixels up, got {tile_size}")


class UniVGVAEDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "a video's latents, one batch entry per frame"}),
                "vae": ("VAE", {"tooltip": "the model's VAE (the UniVG loader's, or Load VAE)"}),
                "frames_per_chunk": ("INT", {"default": 4, "min": 1, "max": 256,
                                             "tooltip": "frames decoded per VAE call: lower it to save memory"}),
                "keep_first_frame": ("BOOLEAN", {"default": True,
                                                 "tooltip": "animation: frame 0 is the input image itself, pixel for pixel "
                                                            "(and the last frame the last_frame image)"}),
            },
            "optional": {
                "tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 32,
                                      "tooltip": "0: whole frames (ComfyUI switches to tiles itself if the device runs "
                                                 "out of memory); N: each frame in tiles of N pixels, blended where "
                                                 "they overlap (a quarter of a tile): less memory for large frames"}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("the video's frames as an image batch (for Save Animated WEBP, Create Video, ...)",)
    FUNCTION = "decode"
    CATEGORY = "UniVG"
    DESCRIPTION = "Decodes a video's latents to frames in chunks, with progress and interrupt between chunks."
    SEARCH_ALIASES = ["video decode", "vae decode video", "latents to frames"]

    def decode(self, samples, vae, frames_per_chunk, keep_first_frame, tile_size=0):
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        latents = samples["samples"]
        if latents.ndim != 4:
            raise ValueError(f"expected LATENT frames [T, C, h, w], got {list(latents.shape)}")
        if not torch.isfinite(latents).all():
            raise ValueError("UniVG Video VAE Decode: the latents hold NaN/inf: the node that made them (the sampler) "
                             "produced them; nothing was decoded")
        check_tile_size(tile_size)
        images = decode_latents(vae, latents, frames_per_chunk, chunk_progress(latents.shape[0]), tile=tile_size)
        check_decoded(images)
        for key, index in (("univg_first_frame", 0), ("univg_last_frame", -1)):
            given = samples.get(key)
            if keep_first_frame and given is not None and tuple(given.shape[1:3]) == tuple(images.shape[1:3]):
                images[index] = given[0, :, :, :3].to(images)
        return (images,)


class UniVGVAEEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "a video's frames as an image batch; sides multiples of 8"}),
                "vae": ("VAE", {"tooltip": "the model's VAE (the UniVG loader's, or Load VAE)"}),
                "frames_per_chunk": ("INT", {"default": 4, "min": 1, "max": 256,
                                             "tooltip": "frames encoded per VAE call: lower it to save memory"}),
            },
            "optional": {
                "tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 32,
                                      "tooltip": "0: whole frames (ComfyUI switches to tiles itself if the device runs "
                                                 "out of memory); N: each frame in tiles of N pixels, blended where "
                                                 "they overlap (a quarter of a tile): less memory for large frames"}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("the frames' latents, one batch entry per frame (e.g. for the BGN Upscaler)",)
    FUNCTION = "encode"
    CATEGORY = "UniVG"
    DESCRIPTION = "Encodes a video's frames to latents in chunks, with progress and interrupt between chunks."
    SEARCH_ALIASES = ["video encode", "vae encode video", "frames to latents"]

    def encode(self, images, vae, frames_per_chunk, tile_size=0):
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        height, width = images.shape[1], images.shape[2]
        if height % 8 or width % 8:
            raise ValueError(f"image size must be a multiple of 8, got {width}x{height}: add an Image Scale node")
        check_tile_size(tile_size)
        return ({"samples": encode_images(vae, images, frames_per_chunk, chunk_progress(images.shape[0]),
                                          tile=tile_size)},)
