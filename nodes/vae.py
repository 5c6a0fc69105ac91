"""Video VAE decode/encode: frame-chunked so memory stays bounded, with progress and
interrupt. IMAGE batches are frames; LATENT samples are [frames, C, h, w]."""

from __future__ import annotations

from .latents import decode_latents, encode_images
from .progress import chunk_progress


class UniVGVAEDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT",),
                "vae": ("VAE",),
                "frames_per_chunk": ("INT", {"default": 4, "min": 1, "max": 256}),
                "keep_first_frame": ("BOOLEAN", {"default": True,
                                                 "tooltip": "animation: frame 0 is the input image itself, pixel for pixel"}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = "UniVG"

    def decode(self, samples, vae, frames_per_chunk, keep_first_frame):
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        latents = samples["samples"]
        if latents.ndim != 4:
            raise ValueError(f"expected LATENT frames [T, C, h, w], got {list(latents.shape)}")
        images = decode_latents(vae, latents, frames_per_chunk, chunk_progress(latents.shape[0]))
        first = samples.get("univg_first_frame")
        if keep_first_frame and first is not None and tuple(first.shape[1:3]) == tuple(images.shape[1:3]):
            images[0] = first[0, :, :, :3].to(images)
        return (images,)


class UniVGVAEEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "vae": ("VAE",),
                "frames_per_chunk": ("INT", {"default": 4, "min": 1, "max": 256}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "UniVG"

    def encode(self, images, vae, frames_per_chunk):
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        height, width = images.shape[1], images.shape[2]
        if height % 8 or width % 8:
            raise ValueError(f"image size must be a multiple of 8, got {width}x{height}: add an Image Scale node")
        return ({"samples": encode_images(vae, images, frames_per_chunk, chunk_progress(images.shape[0]))},)
