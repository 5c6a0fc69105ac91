"""Low-resolution inputs for F_SR training (paper 3.3): the clip degraded with kornia by a
random blur, a random down-scale, JPEG compression and noise, then brought back to the
training size the way inference upsamples (bicubic), so the model learns to restore exactly
what the BGN upscaler hands it. One draw of the parameters per clip: every frame of a clip is
degraded alike, as a real low-resolution video would be."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..video import upsample_frames


@dataclass(frozen=True)
class DegradeRanges:
    blur_sigma: tuple[float, float] = (0.2, 1.5)
    downscale: tuple[float, float] = (2.0, 4.0)
    jpeg_quality: tuple[float, float] = (40.0, 95.0)
    noise_std: tuple[float, float] = (0.0, 0.03)


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def degrade(frames: torch.Tensor, generator: torch.Generator, ranges: DegradeRanges = DegradeRanges()) -> torch.Tensor:
    """[T, 3, H, W] in [-1, 1] -> the same shape, degraded; H and W multiples of 8."""
    import kornia

    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"degrade takes [T, 3, H, W] frames, got {list(frames.shape)}")
    height, width = frames.shape[-2:]
    pixels = (frames.float() + 1) / 2
    sigma = _uniform(ranges.blur_sigma, generator)
    kernel = 2 * max(1, round(3 * sigma)) + 1
    pixels = kornia.filters.gaussian_blur2d(pixels, (kernel, kernel), (sigma, sigma))
    factor = _uniform(ranges.downscale, generator)
    small = (max(8, round(height / factor)), max(8, round(width / factor)))
    pixels = kornia.geometry.transform.resize(pixels, small, interpolation="bilinear", antialias=True)
    quality = torch.tensor([_uniform(ranges.jpeg_quality, generator)])
    pixels = kornia.enhance.jpeg_codec_differentiable(pixels.clamp(0, 1), quality)
    noise = torch.randn(pixels.shape, generator=generator) * _uniform(ranges.noise_std, generator)
    pixels = (pixels + noise).clamp(0, 1)
    return upsample_frames(pixels * 2 - 1, height, width).clamp(-1, 1)


def halved(frames: torch.Tensor) -> torch.Tensor:
    """[T, 3, H, W] in [-1, 1] -> a clean low-resolution copy of the same shape: a 2x area
    downsample brought back up as inference upsamples (a sharp render at half the size)."""
    height, width = frames.shape[-2:]
    small = torch.nn.functional.avg_pool2d(frames.float(), 2)
    return upsample_frames(small, height, width).clamp(-1, 1)
