"""Keyframes: given frames at given positions of a latent video, as pure tensor functions.

A `Keyframes` holds latents [B, C, K, h, w] and the frame index of each (ascending, distinct,
in [0, frames)). Two layouts of the channel-concatenated condition:
- "repeat": the first frame repeated over every frame (UniVG F_A, DynamiCrafter's image-to-video);
- "sparse": zeros except at the keyframes' positions (DynamiCrafter's interp and loop, UniVG F_I).
The BGN condition v_C of keyframes is their per-frame linear blend (`blend`): frame f between
keyframes at p_a < f < p_b is ((p_b - f) v_a + (f - p_a) v_b) / (p_b - p_a), held constant before
the first and after the last. With one keyframe at 0 it is F_A's v_C, the first frame repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .schedule import q_sample

LAYOUTS = ("repeat", "sparse")
MODES = ("first", "first_last", "loop")


@dataclass(frozen=True)
class Keyframes:
    latents: torch.Tensor
    positions: tuple[int, ...]
    frames: int

    def __post_init__(self) -> None:
        if self.latents.ndim != 5:
            raise ValueError(f"keyframe latents must be [B, C, K, h, w], got {list(self.latents.shape)}")
        if self.latents.shape[2] != len(self.positions) or not self.positions:
            raise ValueError(f"{self.latents.shape[2]} keyframe latents for {len(self.positions)} positions")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if list(self.positions) != sorted(set(self.positions)) or not 0 <= self.positions[0] <= self.positions[-1] < self.frames:
            raise ValueError(f"keyframe positions must be distinct, ascending and in [0, {self.frames - 1}], "
                             f"got {list(self.positions)}")


def _frame(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] or [B, C, 1, h, w] -> [B, C, 1, h, w]."""
    if latent.ndim == 4:
        latent = latent.unsqueeze(2)
    if latent.ndim != 5 or latent.shape[2] != 1:
        raise ValueError(f"a keyframe latent must be [B, C, h, w] or [B, C, 1, h, w], got {list(latent.shape)}")
    return latent


def keyframes_for(mode: str, first: torch.Tensor, frames: int, last: torch.Tensor | None = None) -> Keyframes:
    """first: the first frame only; first_last: first and last frame (interpolation); loop: the
    first frame at both ends (the caller drops the last output frame, DynamiCrafter's loop)."""
    if mode not in MODES:
        raise ValueError(f"keyframe mode must be one of {MODES}, got {mode!r}")
    first = _frame(first)
    if mode == "first":
        return Keyframes(first, (0,), frames)
    if frames < 2:
        raise ValueError(f"{mode} needs at least 2 frames, got {frames}")
    if mode == "first_last":
        if last is None:
            raise ValueError("first_last needs the last frame's latent")
        last = _frame(last)
        if last.shape != first.shape:
            raise ValueError(f"the last frame's latent {list(last.shape)} differs from the first's {list(first.shape)}")
        return Keyframes(torch.cat([first, last], dim=2), (0, frames - 1), frames)
    return Keyframes(torch.cat([first, first], dim=2), (0, frames - 1), frames)


def blend_weights(positions: tuple[int, ...], frames: int) -> torch.Tensor:
    """[frames, K] float64: how much of each keyframe each frame's BGN condition holds."""
    weights = torch.zeros(frames, len(positions), dtype=torch.float64)
    for frame in range(frames):
        if frame <= positions[0]:
            weights[frame, 0] = 1.0
        elif frame >= positions[-1]:
            weights[frame, -1] = 1.0
        else:
            after = next(k for k, position in enumerate(positions) if position >= frame)
            span = positions[after] - positions[after - 1]
            weights[frame, after] = (frame - positions[after - 1]) / span
            weights[frame, after - 1] = (positions[after] - frame) / span
    return weights


def blend(keyframes: Keyframes) -> torch.Tensor:
    """The BGN condition v_C: [B, C, frames, h, w], the keyframes' per-frame linear blend."""
    weights = blend_weights(keyframes.positions, keyframes.frames).to(keyframes.latents.device)
    if len(keyframes.positions) == 1:  # F_A's v_C exactly: the frame repeated
        return keyframes.latents.expand(-1, -1, keyframes.frames, -1, -1).contiguous()
    return torch.einsum("bckhw,fk->bcfhw", keyframes.latents.double(), weights).to(keyframes.latents.dtype)


def concat_latent(keyframes: Keyframes, layout: str) -> torch.Tensor:
    """What the UNet reads on its extra input channels, [B, C, frames, h, w]."""
    if layout not in LAYOUTS:
        raise ValueError(f"concat layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "repeat":
        if keyframes.positions != (0,):
            raise ValueError("the repeat layout (first frame repeated) takes one keyframe at frame 0; "
                             f"got keyframes at {list(keyframes.positions)}: use the sparse layout")
        return blend(keyframes)
    batch, channels, _, height, width = keyframes.latents.shape
    concat = keyframes.latents.new_zeros((batch, channels, keyframes.frames, height, width))
    concat[:, :, list(keyframes.positions)] = keyframes.latents
    return concat


def pin(x: torch.Tensor, keyframes: Keyframes, noise: torch.Tensor, abar: float) -> torch.Tensor:
    """x with each keyframe's frame on that keyframe's own forward process at abar (the same
    noise as its frame's start), so sampling lands on the keyframes exactly."""
    x = x.clone()
    positions = list(keyframes.positions)
    x[:, :, positions] = q_sample(keyframes.latents.to(x.dtype), noise[:, :, positions], abar)
    return x
