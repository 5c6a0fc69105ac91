"""Video frames in chunks: the one helper every frame-by-frame VAE call goes through (the
pipelines' encode/decode and the nodes' VAE loops), and bicubic resizing of pixel videos.
Pixel videos are [T, 3, H, W] in [-1, 1]; latent videos are [B, C, T, h, w]."""

from __future__ import annotations

from typing import Callable, Optional

import torch

FrameFunction = Callable[[torch.Tensor], torch.Tensor]


def in_chunks(
    function: FrameFunction,
    frames: torch.Tensor,
    chunk: int,
    before_each: Optional[Callable[[], None]] = None,
    after_each: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """function(frames[i : i + chunk]) for every chunk along dim 0, concatenated.
    `before_each()` runs before each call (e.g. an interrupt check), `after_each(done, total)`
    after it (e.g. a progress bar)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    total = frames.shape[0]
    parts = []
    for start in range(0, total, chunk):
        if before_each is not None:
            before_each()
        parts.append(function(frames[start : start + chunk]))
        if after_each is not None:
            after_each(min(total, start + chunk), total)
    return torch.cat(parts)


def check_pixel_video(frames: torch.Tensor, multiple_of_8: bool = True) -> None:
    """[T, 3, H, W]; H and W multiples of 8 where the frames go into the VAE."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"pixel video must be [T, 3, H, W], got {list(frames.shape)}")
    if multiple_of_8 and (frames.shape[2] % 8 or frames.shape[3] % 8):
        raise ValueError(f"pixel height and width must be multiples of 8, got {frames.shape[2]}x{frames.shape[3]}")


def upsample_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic resize of [T, 3, H, W] frames to height x width (multiples of 8)."""
    import kornia

    if height % 8 or width % 8 or height < 8 or width < 8:
        raise ValueError(f"target size must be positive multiples of 8, got {height}x{width}")
    return kornia.geometry.transform.resize(frames, (height, width), interpolation="bicubic", antialias=True)
