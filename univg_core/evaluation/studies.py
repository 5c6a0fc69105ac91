"""The paper's studies run on UniVG Mini's held-out world, each a function returning plain
numbers (JSON-ready):

- `animation_bgn`: Table 3's animation rows, F_A with and without Biased Gaussian Noise, both
  sampled from q(v_{t_n} | v_C) at t_n = 990 with DPM-Solver++.
- `sr_bgn`: Table 3's super-resolution rows and Figure 7, F_SR with BGN from t = 700 and
  without it from t = 700 and t = 900, 7 DPM-Solver++ steps, against the true 128x128 clip.
- `guidance_grid`: Figure 6, F_B on a caption and a first frame that disagree, over a grid
  of w_T and w_I: how often the object takes the text's colour, how often the image's.
- `guidance_surface`: Figure 6 as a response surface (guidance_surface): 45 pairs x 3 seeds,
  continuous scores fitted against log w_T and log w_I.
- `text_faithfulness`: the CLIPSIM role, the detector's colour / shape / motion accuracy
  of F_B's text-to-video and of the same videos after F_SR.
- `interpolation` and `long_video`: keyframes, the paper's future work (keyframe_studies).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..mini import models
from ..mini.detector import detect
from ..mini.world import ClipSpec, make_specs, render
from . import guidance_surface, keyframe_studies
from .frechet import video_frechet_distance
from .metrics import first_frame_error, mean_interval, psnr, ssim, trajectory_error

HELD_OUT_SEED = 99  # the training sets use seeds 0 (64x64) and 1 (128x128)
Tick = Callable[[str], None]


@dataclass(frozen=True)
class MiniFiles:
    """The UniVG Mini files the studies sample (any may be missing; a study that needs it says so)."""

    base: Path
    base_image: Path
    animation: Path
    animation_no_bgn: Path
    sr: Path
    sr_no_bgn: Path
    interpolation: Path
    interpolation_no_bgn: Path

    @classmethod
    def in_folder(cls, folder: Path) -> "MiniFiles":
        return cls(*(Path(folder) / name for name in
                     (models.BASE_FILE, models.BASE_IMAGE_FILE, models.ANIMATION_FILE, models.ANIMATION_NO_BGN_FILE,
                      models.SR_FILE, models.SR_NO_BGN_FILE, models.INTERPOLATION_FILE,
                      models.INTERPOLATION_NO_BGN_FILE)))

    def require(self, *names: str) -> None:
        missing = [str(getattr(self, name)) for name in names if not getattr(self, name).is_file()]
        if missing:
            raise FileNotFoundError("missing UniVG Mini file(s): " + ", ".join(missing) +
                                    " (python -m univg_core.cli.train_mini makes them)")


@dataclass(frozen=True)
class Settings:
    clips: int = 20
    seeds: tuple[int, ...] = (0, 1)
    animation_steps: int = 50
    sr_steps: int = 7
    base_steps: int = 25
    text_weight: float = 7.5
    grid_pairs: int = 10
    grid_weights: tuple[float, ...] = (0.0, 2.5, 5.0, 7.5)
    grid_seeds: tuple[int, ...] = (0,)
    surface_pairs: int = 45
    surface_seeds: tuple[int, ...] = (0, 1, 2)
    surface_weights: tuple[float, ...] = (0.0, 2.5, 7.5)
    surface_batch: int = 45  # videos sampled together
    sr_strengths: tuple = field(default=(("BGN", 0.7), ("no BGN", 0.7), ("no BGN", 0.9)))
    keyframe_steps: int = 25


def held_out_specs(count: int) -> list[ClipSpec]:
    return make_specs(count, seed=HELD_OUT_SEED, frames=models.FRAMES)


def real_reference_distance(truths: Sequence[np.ndarray], size: int) -> float:
    """The Fréchet distance between the true clips and as many other real clips of the world
    (another seed, so other shapes, colours and paths): a scale for the numbers. It is no
    floor: a model conditioned on each true clip's frame or caption can come closer."""
    others = make_specs(len(truths), seed=HELD_OUT_SEED + 1, frames=models.FRAMES)
    return video_frechet_distance([render(spec, size) for spec in others], truths)


def _no_tick(_: str) -> None:
    pass


def _accuracy(hits: Sequence[bool]) -> dict:
    return mean_interval([float(hit) for hit in hits])


def bicubic_upsample(low: np.ndarray, size: int) -> np.ndarray:
    """uint8 frames [T, h, w, 3] -> [T, size, size, 3], plain bicubic: the baseline F_SR must beat."""
    pixels = torch.from_numpy(low).permute(0, 3, 1, 2).float()
    up = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False)
    return up.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def animation_bgn(renderer, files: MiniFiles, settings: Settings, tick: Tick = _no_tick) -> dict:
    specs = held_out_specs(settings.clips)
    truths = [render(spec, models.SIZE) for spec in specs]
    true_tracks = [detect(clip).centroids for clip in truths]
    rows = {}
    for label, path in (("BGN", files.animation), ("no BGN", files.animation_no_bgn)):
        videos, first, track, colour, shape, motion = [], [], [], [], [], []
        for (spec, clip, true_track), seed in itertools.product(zip(specs, truths, true_tracks), settings.seeds):
            tick(f"animation, {label}")
            video = renderer.animate(path, clip[0], spec.caption, seed=seed, steps=settings.animation_steps,
                                     sampler="dpmpp_2m", t_n=990, text_weight=settings.text_weight)
            found = detect(video)
            videos.append(video)
            first.append(first_frame_error(video, clip[0]))
            track.append(trajectory_error(found.centroids, true_track, models.SIZE))
            colour.append(found.colour == spec.colour)
            shape.append(found.shape == spec.shape)
            motion.append(found.motion == spec.motion)
        rows[label] = {
            "first_frame_error": mean_interval(first), "trajectory_error_px": mean_interval(track),
            "colour_accuracy": _accuracy(colour), "shape_accuracy": _accuracy(shape),
            "motion_accuracy": _accuracy(motion), "frechet_distance": video_frechet_distance(videos, truths),
        }
    return {"videos_per_row": len(specs) * len(settings.seeds), "steps": settings.animation_steps, "t_n": 990,
            "real_frechet_distance": real_reference_distance(truths, models.SIZE), "rows": rows}


def sr_bgn(renderer, files: MiniFiles, settings: Settings, tick: Tick = _no_tick) -> dict:
    specs = held_out_specs(settings.clips)
    pairs = [(render(spec, models.SIZE), render(spec, 2 * models.SIZE)) for spec in specs]
    highs = [high for _, high in pairs]
    paths = {"BGN": files.sr, "no BGN": files.sr_no_bgn}
    variants = [(label, paths[label], strength) for label, strength in settings.sr_strengths]
    rows = {}
    for label, path, strength in variants + [("bicubic", None, None)]:
        videos, scores, similarity, colour, shape = [], [], [], [], []
        for (spec, (low, high)), seed in itertools.product(zip(specs, pairs), settings.seeds):
            if path is None and seed != settings.seeds[0]:
                continue  # bicubic has no seed
            tick(f"super-resolution, {label}")
            if path is None:
                video = bicubic_upsample(low, 2 * models.SIZE)
            else:
                video = renderer.super_resolve(path, low, spec.caption, seed=seed, steps=settings.sr_steps,
                                               strength=strength, text_weight=settings.text_weight)
            found = detect(video)
            videos.append(video)
            scores.append(psnr(video, high))
            similarity.append(ssim(video, high))
            colour.append(found.colour == spec.colour)
            shape.append(found.shape == spec.shape)
        name = label if strength is None else f"{label}, t = {round(strength * 1000)}"
        rows[name] = {"psnr_db": mean_interval(scores), "ssim": mean_interval(similarity),
                      "colour_accuracy": _accuracy(colour), "shape_accuracy": _accuracy(shape),
                      "frechet_distance": video_frechet_distance(videos, highs)}
    return {"clips": len(specs), "seeds": len(settings.seeds), "steps": settings.sr_steps,
            "real_frechet_distance": real_reference_distance(highs, 2 * models.SIZE), "rows": rows}


def conflicting_pairs(count: int) -> list[tuple[ClipSpec, ClipSpec]]:
    """(image clip, caption clip) pairs of held-out clips that differ in colour, shape, background
    and motion (the caption's motion is a direction, so following it is a centroid's travel)."""
    specs = held_out_specs(max(4 * count, 20))
    pairs = []
    for image_spec in specs:
        for text_spec in specs:
            if (text_spec.colour != image_spec.colour and text_spec.shape != image_spec.shape
                    and text_spec.background != image_spec.background
                    and text_spec.motion != image_spec.motion and text_spec.motion != "growing"):
                pairs.append((image_spec, text_spec))
                break
        if len(pairs) == count:
            break
    return pairs


def guidance_grid(renderer, files: MiniFiles, settings: Settings, tick: Tick = _no_tick) -> dict:
    cells = []
    pairs = conflicting_pairs(settings.grid_pairs)
    images = [render(image_spec, models.SIZE)[0] for image_spec, _ in pairs]
    for w_text, w_image in itertools.product(settings.grid_weights, repeat=2):
        found = []
        for ((image_spec, text_spec), image), seed in itertools.product(zip(pairs, images), settings.grid_seeds):
            tick(f"w_T {w_text:g}, w_I {w_image:g}")
            video = renderer.text_to_video(files.base_image, text_spec.caption, seed, steps=settings.base_steps,
                                           text_weight=w_text, image=image, image_weight=w_image)
            found.append((image_spec, text_spec, detect(video)))
        cell = {"w_text": w_text, "w_image": w_image, "videos": len(found)}
        for what in ("colour", "shape", "background"):
            cell[f"follows_text_{what}"] = float(np.mean([getattr(d, what) == getattr(t, what) for _, t, d in found]))
            cell[f"follows_image_{what}"] = float(np.mean([getattr(d, what) == getattr(i, what) for i, _, d in found]))
        cell["text_motion"] = float(np.mean([d.motion == t.motion for _, t, d in found]))
        cells.append(cell)
    return {"pairs": [{"image": image_spec.caption, "text": text_spec.caption} for image_spec, text_spec in pairs],
            "steps": settings.base_steps, "cells": cells}


def text_faithfulness(renderer, files: MiniFiles, settings: Settings, tick: Tick = _no_tick) -> dict:
    specs = held_out_specs(settings.clips)
    found = {"F_B": [], "F_B + F_SR": []}
    for spec, seed in itertools.product(specs, settings.seeds):
        tick("text-to-video")
        video = renderer.text_to_video(files.base, spec.caption, seed, steps=settings.base_steps,
                                       text_weight=settings.text_weight)
        high = renderer.super_resolve(files.sr, video, spec.caption, seed=seed, steps=settings.sr_steps,
                                      text_weight=settings.text_weight)
        found["F_B"].append((spec, detect(video)))
        found["F_B + F_SR"].append((spec, detect(high)))
    rows = {}
    for label, results in found.items():
        rows[label] = {f"{what}_accuracy": _accuracy([getattr(d, what) == getattr(s, what) for s, d in results])
                       for what in ("colour", "shape", "motion")}
        rows[label]["all_three"] = _accuracy([d.matches(s.shape, s.colour, s.motion) for s, d in results])
    return {"videos_per_row": len(specs) * len(settings.seeds), "steps": settings.base_steps, "rows": rows}


STUDIES = {
    "animation_bgn": animation_bgn,
    "sr_bgn": sr_bgn,
    "guidance_grid": guidance_grid,
    "guidance_surface": guidance_surface.surface,
    "text_faithfulness": text_faithfulness,
    "interpolation": keyframe_studies.interpolation,
    "long_video": keyframe_studies.long_video,
}


REQUIRES = {
    "animation_bgn": ("animation", "animation_no_bgn"),
    "sr_bgn": ("sr", "sr_no_bgn"),
    "guidance_grid": ("base_image",),
    "guidance_surface": ("base_image",),
    "text_faithfulness": ("base", "sr"),
    "interpolation": ("interpolation", "interpolation_no_bgn", "animation"),
    "long_video": ("animation",),
}


def study_size(name: str, settings: Settings) -> int:
    """How many videos a study renders (for the progress bar)."""
    videos = settings.clips * len(settings.seeds)
    if name == "animation_bgn":
        return 2 * videos
    if name == "sr_bgn":
        return len(settings.sr_strengths) * videos + settings.clips
    if name in ("interpolation", "long_video"):
        return keyframe_studies.study_size(name, settings)
    if name == "guidance_surface":
        return guidance_surface.surface_size(settings)
    if name == "guidance_grid":
        return len(settings.grid_weights) ** 2 * settings.grid_pairs * len(settings.grid_seeds)
    return videos


def run_study(name: str, renderer, files: MiniFiles, settings: Settings, tick: Optional[Tick] = None) -> dict:
    files.require(*REQUIRES[name])
    return STUDIES[name](renderer, files, settings, tick or _no_tick)
