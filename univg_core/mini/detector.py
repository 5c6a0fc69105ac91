"""A detector for the world's videos, used to score what a model renders: it segments the
object against the background, reads its colour and shape, and tracks its centroid and area
over the frames to tell the motion.

- background: the median colour of each frame's border (named: the nearest world background)
- object: pixels whose colour is further than MASK_DISTANCE from the background
- colour: the nearest world colour to the object's mean colour
- shape: how much of its (trimmed) bounding box the object fills: triangle ~0.7, circle ~0.84, square ~0.97
- motion: "growing" when the area grows by GROWTH_RATIO or more, else the dominant axis of the
  centroid's displacement from the first frames to the last when it exceeds MIN_TRAVEL
  (frame units), else "still"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .world import BACKGROUNDS, COLOURS

MASK_DISTANCE = 0.2  # Euclidean RGB distance in [0, 1] units
MIN_AREA = 0.004  # of the frame: below this no object is found in a frame
MIN_TRAVEL = 0.1
GROWTH_RATIO = 2.0
FILL_THRESHOLDS = (0.765, 0.9)  # triangle | circle | square (fill of the trimmed bounding box)


@dataclass(frozen=True)
class Detection:
    found: bool
    background: Optional[str] = None
    colour: Optional[str] = None
    shape: Optional[str] = None
    motion: Optional[str] = None
    centroids: tuple = ()  # per frame (x, y) in frame units, None where nothing was found
    areas: tuple = ()  # per frame, fraction of the frame
    displacement: tuple = (0.0, 0.0)

    def matches(self, shape: Optional[str] = None, colour: Optional[str] = None, motion: Optional[str] = None,
                background: Optional[str] = None) -> bool:
        """Whether every attribute given agrees with what was detected (the object must be found)."""
        wanted = {"shape": shape, "colour": colour, "motion": motion, "background": background}
        return self.found and all(value is None or getattr(self, key) == value for key, value in wanted.items())


def _as_float_frames(video) -> np.ndarray:
    frames = np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] < 3:
        raise ValueError(f"expected frames [T, H, W, 3], got {list(frames.shape)}")
    frames = frames[..., :3].astype(np.float64)
    return frames / 255.0 if np.asarray(video).dtype == np.uint8 else frames


def _box_mean(values: np.ndarray, radius: int = 1) -> np.ndarray:
    """Mean over a (2 radius + 1)^2 window of the last two axes, edges replicated."""
    padded = np.pad(values, [(0, 0)] * (values.ndim - 2) + [(radius, radius)] * 2, mode="edge")
    height, width = values.shape[-2:]
    size = 2 * radius + 1
    total = sum(padded[..., dy : dy + height, dx : dx + width] for dy in range(size) for dx in range(size))
    return total / size**2


def border_colours(frames: np.ndarray) -> np.ndarray:
    """[T, 3]: the median colour of each frame's border."""
    border = np.concatenate(
        [frames[:, 0], frames[:, -1], frames[:, 1:-1, 0], frames[:, 1:-1, -1]], axis=1
    )
    return np.median(border, axis=1)


def object_masks(frames: np.ndarray) -> np.ndarray:
    """[T, H, W] booleans: the pixels that differ from the frame's border colour (the colour
    distance averaged over 3x3 first, so pixel noise does not make objects)."""
    distance = np.linalg.norm(frames - border_colours(frames)[:, None, None, :], axis=-1)
    return _box_mean(distance) > MASK_DISTANCE


def _nearest(rgb: np.ndarray, named: dict) -> str:
    names = list(named)
    palette = np.array([named[name] for name in names], dtype=np.float64) / 255.0
    return names[int(np.argmin(np.linalg.norm(palette - rgb[None], axis=1)))]


def nearest_colour(rgb: np.ndarray) -> str:
    return _nearest(rgb, COLOURS)


def nearest_background(rgb: np.ndarray) -> str:
    return _nearest(rgb, BACKGROUNDS)


def pieces(mask: np.ndarray, min_share: float = MIN_AREA / 4) -> int:
    """How many 4-connected pieces of a frame's object mask [H, W] cover at least `min_share` of
    the frame each (one drawn object is one piece; a broken one several)."""
    height, width = mask.shape
    labels = np.where(mask, np.arange(mask.size, dtype=np.int64).reshape(mask.shape), mask.size)
    while True:  # every pixel takes the smallest label among its masked neighbours until none changes
        padded = np.pad(labels, 1, constant_values=mask.size)
        smallest = np.minimum.reduce([labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        smallest = np.where(mask, smallest, mask.size)
        if np.array_equal(smallest, labels):
            break
        labels = smallest
    _, sizes = np.unique(labels[mask], return_counts=True)
    return int((sizes >= min_share * height * width).sum())


def _shape_from_fill(fill: float) -> str:
    if fill < FILL_THRESHOLDS[0]:
        return "triangle"
    return "circle" if fill < FILL_THRESHOLDS[1] else "square"


def _fill(xs: np.ndarray, ys: np.ndarray) -> float:
    """The share of the object's bounding box it covers; the box spans the 2nd to 98th
    percentile of its pixels so a few stray pixels do not stretch it."""
    x0, x1 = np.percentile(xs, [2, 98])
    y0, y1 = np.percentile(ys, [2, 98])
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return float(inside.sum() / ((x1 - x0 + 1) * (y1 - y0 + 1)))


def _motion(centroids: list, areas: list) -> tuple[str, tuple[float, float]]:
    found = [(c, a) for c, a in zip(centroids, areas) if c is not None]
    quarter = max(1, len(found) // 4)
    start = np.mean([c for c, _ in found[:quarter]], axis=0)
    end = np.mean([c for c, _ in found[-quarter:]], axis=0)
    dx, dy = (end - start).tolist()
    first_area = np.mean([a for _, a in found[:quarter]])
    last_area = np.mean([a for _, a in found[-quarter:]])
    if last_area >= GROWTH_RATIO * first_area:
        return "growing", (dx, dy)
    if max(abs(dx), abs(dy)) < MIN_TRAVEL:
        return "still", (dx, dy)
    if abs(dx) >= abs(dy):
        return ("right" if dx > 0 else "left"), (dx, dy)
    return ("down" if dy > 0 else "up"), (dx, dy)


def detect(video) -> Detection:
    """Detection for frames [T, H, W, 3] (uint8, or floats in [0, 1])."""
    frames = _as_float_frames(video)
    masks = object_masks(frames)
    height, width = masks.shape[1:]
    centroids, areas, colours, fills = [], [], [], []
    for frame, mask in zip(frames, masks):
        area = mask.mean()
        if area < MIN_AREA:
            centroids.append(None)
            areas.append(float(area))
            continue
        ys, xs = np.nonzero(mask)
        centroids.append(((xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height))
        areas.append(float(area))
        colours.append(frame[mask].mean(axis=0))
        fills.append(_fill(xs, ys))
    background = nearest_background(border_colours(frames).mean(axis=0))
    if len(colours) < max(2, len(frames) // 2):
        return Detection(found=False, background=background, centroids=tuple(centroids), areas=tuple(areas))
    motion, displacement = _motion(centroids, areas)
    return Detection(
        found=True,
        background=background,
        colour=nearest_colour(np.mean(colours, axis=0)),
        shape=_shape_from_fill(float(np.median(fills))),
        motion=motion,
        centroids=tuple(centroids),
        areas=tuple(areas),
        displacement=displacement,
    )
