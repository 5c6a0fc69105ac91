"""How UniVG Mini's F_I does on held-out clips of the world: each clip's first and last frames
given, the frames between rendered and scored against the clip's own (the detector's object in
each frame: found, at the truth's place, of its size and colour), beside two baselines that use
the same keyframes: their crossfade (the blend BGN starts from, decoded) and F_A from the first
frame alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..diffusion import keyframes
from .detector import MIN_AREA, nearest_colour, object_masks
from .models import FRAMES, SIZE
from .render import to_pixels
from .world import ClipSpec, make_specs, render

VALIDATION_SEED = 300_001  # the clips F_I's BGN window is chosen on
TEST_SEED = 300_002  # the clips the shipped F_I is reported on
PLACE_TOLERANCE = 0.1  # frame units between the centroids
SIZE_RANGE = (0.5, 1.5)  # the object's area over the truth's
BETWEEN_MARGIN = 0.05  # frame units beyond the keyframes' centroids
BACKWARD_STEP = 0.03  # frame units a frame may fall back from the one before


@dataclass(frozen=True)
class FrameObject:
    found: bool
    centroid: tuple[float, float] = (0.0, 0.0)
    area: float = 0.0
    colour: str = ""


def frame_objects(video: np.ndarray) -> list[FrameObject]:
    """The detector's object in each frame of uint8 [T, H, W, 3] (all the pixels off the border colour)."""
    frames = np.asarray(video, dtype=np.float64) / 255
    objects = []
    for frame, mask in zip(frames, object_masks(frames)):
        area = float(mask.mean())
        if area < MIN_AREA:
            objects.append(FrameObject(False))
            continue
        ys, xs = np.nonzero(mask)
        height, width = mask.shape
        objects.append(FrameObject(True, ((xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height), area,
                                   nearest_colour(frame[mask].mean(axis=0))))
    return objects


def frame_right(ours: FrameObject, truth: FrameObject) -> bool:
    """One object where the truth has it: found, centroid within PLACE_TOLERANCE, area within
    SIZE_RANGE of the truth's (a crossfade of two objects has twice the area), the same colour."""
    if not (ours.found and truth.found):
        return False
    distance = np.hypot(ours.centroid[0] - truth.centroid[0], ours.centroid[1] - truth.centroid[1])
    return (distance <= PLACE_TOLERANCE and SIZE_RANGE[0] <= ours.area / truth.area <= SIZE_RANGE[1]
            and ours.colour == truth.colour)


def between_scores(video: np.ndarray, truth: np.ndarray) -> dict:
    """Scores of the frames strictly between the first and the last."""
    ours, theirs = frame_objects(video)[1:-1], frame_objects(truth)[1:-1]
    right = [frame_right(a, b) for a, b in zip(ours, theirs)]
    error = (np.asarray(video[1:-1], dtype=np.float64) - np.asarray(truth[1:-1], dtype=np.float64)) / 255
    return {"frames_right": float(np.mean(right)), "psnr": float(-10 * np.log10(max(np.mean(error ** 2), 1e-10)))}


def moves_between(video: np.ndarray) -> str:
    """"ok" when the frames between the first and the last show one object of the first frame's
    colour and the keyframes' size, between the keyframes along the axis they differ on, moving
    from one to the other without going back; else what failed first."""
    objects = frame_objects(video)
    first, last = objects[0], objects[-1]
    if not (first.found and last.found):
        return "keyframe lost"
    axis = int(abs(last.centroid[1] - first.centroid[1]) > abs(last.centroid[0] - first.centroid[0]))
    distance = last.centroid[axis] - first.centroid[axis]
    low, high = sorted((first.centroid[axis], last.centroid[axis]))
    area = (first.area + last.area) / 2
    for frame in objects[1:-1]:
        if not frame.found:
            return "lost"
        if frame.colour != first.colour:
            return "colour"
        if not SIZE_RANGE[0] <= frame.area / area <= SIZE_RANGE[1]:
            return "size"
        if not low - BETWEEN_MARGIN <= frame.centroid[axis] <= high + BETWEEN_MARGIN:
            return "outside"
    progress = [np.sign(distance) * frame.centroid[axis] for frame in objects]
    if np.min(np.diff(progress)) < -BACKWARD_STEP:
        return "backward"
    return "ok" if progress[-2] - progress[1] >= abs(distance) / 2 else "stalled"


def horizontal_pairs(seed: int = TEST_SEED, count: int = 12) -> list[tuple[ClipSpec, np.ndarray]]:
    """The first `count` clips of `seed` whose object moves left or right: keyframes with the
    object at one side and then further to the other."""
    specs = [spec for spec in make_specs(8 * count, seed, FRAMES) if spec.motion in ("left", "right")][:count]
    return [(spec, render(spec, SIZE)) for spec in specs]


def clips(seed: int, count: int) -> list[tuple[ClipSpec, np.ndarray]]:
    return [(spec, render(spec, SIZE)) for spec in make_specs(count, seed, FRAMES)]


def mean_of(scores: Sequence[dict]) -> dict:
    return {key: float(np.mean([score[key] for score in scores])) for key in scores[0]}


def evaluate(renderer, model_path, clip_seed: int, count: int, sampling_seeds: Sequence[int] = (0,), steps: int = 25,
             text_weight: float = 7.5, t_n=None, guidance_from_t: int = 0) -> list[dict]:
    """between_scores of F_I (`renderer`: a MiniRenderer) on `count` clips of `clip_seed`, each
    rendered once per sampling seed, the clip's own caption guiding it."""
    items = clips(clip_seed, count)
    firsts, lasts = [video[0] for _, video in items], [video[-1] for _, video in items]
    captions = [spec.caption for spec, _ in items]
    scores = []
    for seed in sampling_seeds:
        videos = renderer.interpolate_many(model_path, firsts, lasts, captions, [seed] * count, frames=FRAMES,
                                           steps=steps, text_weight=text_weight, t_n=t_n,
                                           guidance_from_t=guidance_from_t)
        scores += [between_scores(video, truth) for video, (_, truth) in zip(videos, items)]
    return scores


def crossfade_videos(renderer, model_path, videos: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The baseline BGN starts from: each video's first and last frames' latent blend, decoded
    (through `model_path`'s VAE)."""
    model = renderer.model(model_path)
    blends = []
    for video in videos:
        ends = renderer.encode(model, to_pixels(video[[0, -1]]))  # [2, C, h, w]
        given = keyframes.keyframes_for("first_last", ends[:1], len(video), last=ends[1:])
        with torch.no_grad():
            blends.append(renderer.decode(model, keyframes.blend(given)))
    return blends


def crossfade_scores(renderer, model_path, clip_seed: int, count: int) -> list[dict]:
    truths = [truth for _, truth in clips(clip_seed, count)]
    return [between_scores(blend, truth) for blend, truth in zip(crossfade_videos(renderer, model_path, truths), truths)]
