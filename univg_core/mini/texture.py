"""Reading the world's super-resolution detail: which pixel pattern an object carries at twice
the base size (world.TEXTURES), and how much of a frame's energy lies above the base size's
Nyquist frequency. Pure numpy, for scoring what an upscaler renders."""

from __future__ import annotations

import numpy as np

from .detector import _as_float_frames, object_masks
from .world import TEXTURES, texture_pattern

KINDS = ("checker", "vertical", "horizontal")
MIN_TEXTURE = 0.06  # [0, 1] units summed over the channels: weaker than this reads as "none"


def block_detail(frames: np.ndarray) -> np.ndarray:
    """What a 2x area downsample removes: each pixel minus its aligned 2x2 block's mean
    ([T, H, W, C] float, H and W even)."""
    count, height, width, channels = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frames need even sides, got {height}x{width}")
    blocks = frames.reshape(count, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4), keepdims=True)
    return (frames.reshape(count, height // 2, 2, width // 2, 2, channels) - blocks).reshape(frames.shape)


def _interior(mask: np.ndarray) -> np.ndarray:
    """The mask less a 2-pixel rim, where the object's edge would mix into the pattern."""
    inner = mask.copy()
    for axis in (0, 1):
        for shift in (-2, -1, 1, 2):
            inner &= np.roll(mask, shift, axis=axis)
    return inner


def texture_strengths(frames) -> np.ndarray:
    """[T, 3]: per frame, how strongly the object's interior carries each of KINDS (the block
    detail projected on the pattern, summed over the channels; 0 where no object is found)."""
    frames = _as_float_frames(frames)
    detail = block_detail(frames).sum(axis=-1)
    masks = object_masks(frames)
    height, width = frames.shape[1:3]
    strengths = np.zeros((frames.shape[0], len(KINDS)))
    for index, mask in enumerate(masks):
        inner = _interior(mask)
        if inner.sum() < 4:
            continue
        for column, kind in enumerate(KINDS):
            strengths[index, column] = float((detail[index] * texture_pattern(kind, height, width))[inner].mean())
    return strengths


def read_textures(frames) -> list[str]:
    """Per frame: the pattern the object carries (one of KINDS), or "none"."""
    strengths = texture_strengths(frames)
    return [KINDS[int(row.argmax())] if row.max() >= MIN_TEXTURE else "none" for row in strengths]


def texture_for(shape: str) -> str:
    return TEXTURES[shape]


def energy_above_nyquist(frames, base_size: int) -> float:
    """Spectral energy of the frames (each channel's mean removed) at frequencies above the Nyquist
    frequency of `base_size` pixels across: max(|fx|, |fy|) > base_size / 2 cycles per frame."""
    frames = _as_float_frames(frames)
    height, width = frames.shape[1:3]
    spectrum = np.fft.fft2(frames - frames.mean(axis=(1, 2), keepdims=True), axes=(1, 2))
    fy = np.abs(np.fft.fftfreq(height) * height)[:, None]
    fx = np.abs(np.fft.fftfreq(width) * width)[None, :]
    above = np.maximum(fy, fx) > base_size / 2
    return float((np.abs(spectrum) ** 2)[:, above].sum() / (height * width))
