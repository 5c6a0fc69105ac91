"""Keyframe studies on UniVG Mini's held-out world (the clips of interp_eval.TEST_SEED, on which
no choice was made), each a function returning plain numbers (JSON-ready):

- `interpolation`: each clip's first and last frames given, the frames between scored against
  the clip's own (PSNR, trajectory error, the detector's object, colour and shape): F_I with
  and without Biased Gaussian Noise (and with the BGN-consistent sampler), the keyframes' latent
  blend decoded (the crossfade BGN starts from) and the nearest keyframe repeated; BGN - no BGN
  and consistent - plain sampler differences paired over clips x seeds.
- `long_video`: F_A from each clip's first frame, continued three times from the last latent
  frame (as UniVG Extend Video chains LATENTs): how the object's colour, size and the
  background hold in each window against the first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..mini import interp_eval, models
from ..mini.detector import border_colours, detect
from ..mini.render import to_pixels
from .metrics import mean_interval, trajectory_error

INTERPOLATION_ARMS = ("F_I, BGN", "F_I, BGN, consistent sampler", "F_I, no BGN", "crossfade", "nearest keyframe")
SAMPLED_ARMS = (("F_I, BGN", "interpolation", "plain"), ("F_I, BGN, consistent sampler", "interpolation", "consistent"),
                ("F_I, no BGN", "interpolation_no_bgn", "plain"))  # label, MiniFiles field, bgn_sampling
LONG_VIDEO_WINDOWS = 4  # the first clip and three extensions, as the long_video workflow


def nearest_keyframe(video: np.ndarray) -> np.ndarray:
    """Every frame between the first and the last replaced by the nearer of the two."""
    out = video.copy()
    middle = (len(video) - 1) / 2
    for index in range(1, len(video) - 1):
        out[index] = video[0] if index < middle else video[-1]
    return out


def _track(video: np.ndarray) -> list:
    return [item.centroid if item.found else None for item in interp_eval.frame_objects(video)]


def between_row(video: np.ndarray, truth: np.ndarray, spec) -> dict:
    """One interpolated video's numbers on the frames strictly between the keyframes."""
    scores = interp_eval.between_scores(video, truth)
    found = detect(video[1:-1])
    return {"psnr_db": scores["psnr"], "frames_right": scores["frames_right"],
            "trajectory_error_px": trajectory_error(_track(video)[1:-1], _track(truth)[1:-1], models.SIZE),
            "colour": float(found.colour == spec.colour), "shape": float(found.shape == spec.shape),
            "moves_between": float(interp_eval.moves_between(video) == "ok")}


def _summarise(rows: Sequence[dict]) -> dict:
    return {key: mean_interval([row[key] for row in rows]) for key in rows[0]}


def interpolation(renderer, files, settings, tick) -> dict:
    items = interp_eval.clips(interp_eval.TEST_SEED, settings.clips)
    specs, truths = [spec for spec, _ in items], [video for _, video in items]
    seeds = settings.seeds
    videos = {}
    for label, field, bgn_sampling in SAMPLED_ARMS:
        videos[label] = []
        for seed in seeds:
            videos[label] += renderer.interpolate_many(
                getattr(files, field), [video[0] for video in truths], [video[-1] for video in truths],
                [s.caption for s in specs], [seed] * len(specs), steps=settings.keyframe_steps,
                guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T, bgn_sampling=bgn_sampling)
            for _ in specs:
                tick(f"interpolation, {label}")
    videos["crossfade"] = interp_eval.crossfade_videos(renderer, files.animation, truths) * len(seeds)
    videos["nearest keyframe"] = [nearest_keyframe(video) for video in truths] * len(seeds)
    pairs = list(zip(specs * len(seeds), truths * len(seeds)))
    per_video = {label: [between_row(video, truth, spec) for video, (spec, truth) in zip(videos[label], pairs)]
                 for label in INTERPOLATION_ARMS}
    return {"clips": len(specs), "seeds": len(seeds), "steps": settings.keyframe_steps,
            "guidance_from_t": models.ANIMATION_GUIDANCE_FROM_T,
            "rows": {label: _summarise(rows) for label, rows in per_video.items()},
            "bgn_minus_no_bgn": _paired(per_video["F_I, BGN"], per_video["F_I, no BGN"]),
            "consistent_minus_plain": _paired(per_video["F_I, BGN, consistent sampler"], per_video["F_I, BGN"])}


def _paired(ours: Sequence[dict], theirs: Sequence[dict]) -> dict:
    """Mean differences (ours - theirs) over the same clips and seeds, with their 95% intervals."""
    return {key: mean_interval([a[key] - b[key] for a, b in zip(ours, theirs)])
            for key in ("psnr_db", "trajectory_error_px", "frames_right", "moves_between")}


def _found_areas(found) -> list:
    return [area for area, centroid in zip(found.areas, found.centroids) if centroid is not None]


def window_row(window: np.ndarray, first_areas: Sequence[float], truth_background: np.ndarray, colour: str) -> dict:
    """How one window of a long video holds against its first window (`first_areas`: the object's
    areas there): the object found and of the caption's colour, its mean area over the first
    window's, the background's distance (0-255 levels) from the true clip's."""
    found = detect(window)
    areas = _found_areas(found)
    size = float(np.mean(areas) / np.mean(first_areas)) if areas and first_areas else float("nan")
    backgrounds = border_colours(np.asarray(window, dtype=np.float64) / 255)
    return {"found": float(found.found), "colour": float(found.colour == colour), "size_vs_first": size,
            "background_shift": float(np.linalg.norm(backgrounds - truth_background, axis=-1).mean() * 255)}


@torch.no_grad()
def long_video(renderer, files, settings, tick) -> dict:
    items = interp_eval.clips(interp_eval.TEST_SEED, settings.clips)
    model = renderer.model(files.animation)
    captions = [spec.caption for spec, _ in items]
    first = torch.cat([renderer.encode(model, to_pixels(video[:1])) for _, video in items])
    rows = [[] for _ in range(LONG_VIDEO_WINDOWS)]
    for seed in settings.seeds:
        start, parts = first, []
        for window in range(LONG_VIDEO_WINDOWS):
            latents = renderer.latents_through_keyframes(
                model, "first", start, None, captions, [seed + window] * len(items), steps=settings.keyframe_steps,
                guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T)
            parts.append(latents if window == 0 else latents[:, :, 1:])  # the shared frame once
            start = latents[:, :, -1]
            for _ in items:
                tick("long video")
        videos = renderer.decode_each(model, torch.cat(parts, dim=2))
        for (spec, truth), video in zip(items, videos):
            background = border_colours(np.asarray(truth[:1], dtype=np.float64) / 255)[0]
            first_areas = _found_areas(detect(video[:models.FRAMES]))
            for window in range(LONG_VIDEO_WINDOWS):
                span = video[window * (models.FRAMES - 1): window * (models.FRAMES - 1) + models.FRAMES]
                rows[window].append(window_row(span, first_areas, background, spec.colour))
    return {"clips": len(items), "seeds": len(settings.seeds), "steps": settings.keyframe_steps,
            "frames": LONG_VIDEO_WINDOWS * (models.FRAMES - 1) + 1,
            "windows": [{key: mean_interval([row[key] for row in window if np.isfinite(row[key])])
                         for key in window[0]} for window in rows]}


def study_size(name: str, settings) -> int:
    videos = settings.clips * len(settings.seeds)
    return len(SAMPLED_ARMS) * videos if name == "interpolation" else LONG_VIDEO_WINDOWS * videos
