"""What a 128x128 video of the world is held to against its truth: the detail a 2x super-resolution
must add (the shapes' pixel patterns where the truth has them, sharp outlines) and the content it must
keep (its own 2x area downsample against the 64x64 input). Frames [T, H, W, 3], uint8 or floats in
[0, 1]; the truth is world.render(spec, 128, textured=True).

The detail is scored coherently, so noise cannot pass for it: `detail_coherence` is the projection of
the frames' block detail (what a 2x area downsample removes) on the truth's, over the truth's energy
(1: all of it, in phase; noise and a wrong pattern: about 0), and `detail_excess` the frames' block
detail energy over the truth's (noise raises it)."""

from __future__ import annotations

import math

import numpy as np

from .detector import _as_float_frames
from .texture import KINDS, block_detail, energy_above_nyquist, texture_strengths
from .world import TEXTURES, ClipSpec, _coverage

BASE_SIZE = 64
MIN_STRENGTH_SHARE = 0.5  # a pattern counts as drawn at half the truth's strength or more


def edge_pixels(spec: ClipSpec, size: int = 128) -> np.ndarray:
    """[T, size, size]: the object's partly covered outline pixels and their 3x3 neighbours."""
    masks = []
    for centre, radius in zip(spec.centres, spec.radii):
        alpha = _coverage(spec.shape, centre, radius, size)
        outline = np.pad((alpha > 0) & (alpha < 1), 1)
        grown = np.zeros((size, size), dtype=bool)
        for dy in range(3):
            for dx in range(3):
                grown |= outline[dy:dy + size, dx:dx + size]
        masks.append(grown)
    return np.stack(masks)


def psnr_on(frames, truth, where: np.ndarray | None = None) -> float:
    error = (_as_float_frames(frames) - _as_float_frames(truth)) ** 2
    mse = float(error[where].mean()) if where is not None else float(error.mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def area_halved(frames) -> np.ndarray:
    frames = _as_float_frames(frames)
    count, height, width, channels = frames.shape
    return frames.reshape(count, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


def textures_drawn(frames, truth, shape: str) -> list[bool]:
    """Per frame: the shape's pattern is the strongest of the three and at least MIN_STRENGTH_SHARE
    of the truth's strength."""
    column = KINDS.index(TEXTURES[shape])
    drawn, wanted = texture_strengths(frames), texture_strengths(truth)
    return [bool(row.argmax() == column and row[column] >= MIN_STRENGTH_SHARE * target[column] > 0)
            for row, target in zip(drawn, wanted)]


def sr_scores(frames, spec: ClipSpec, truth, low) -> dict:
    """`frames`: a 128x128 rendering of `spec`; `truth`: its textured 128x128 clip; `low`: the
    64x64 input."""
    detail, truth_detail = block_detail(_as_float_frames(frames)), block_detail(_as_float_frames(truth))
    truth_energy = float((truth_detail ** 2).sum())
    return {
        "psnr": psnr_on(frames, truth),
        "edge_psnr": psnr_on(frames, truth, edge_pixels(spec, truth.shape[1])),
        "detail_coherence": float((detail * truth_detail).sum()) / truth_energy,
        "detail_excess": float((detail ** 2).sum()) / truth_energy,
        "energy_above_nyquist_share": energy_above_nyquist(frames, BASE_SIZE) / energy_above_nyquist(truth, BASE_SIZE),
        "texture_right": float(np.mean(textures_drawn(frames, truth, spec.shape))),
        "content_psnr": psnr_on(area_halved(frames), low),
    }


def mean_scores(rows: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per arm, the mean of each score over its rows (one row per clip, or clip and seed)."""
    return {name: {key: float(np.mean([row[key] for row in values])) for key in values[0]} for name, values in rows.items()}
