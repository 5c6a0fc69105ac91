"""Figure 6 as a response surface: F_B given a caption and a first frame that disagree in colour
and background, over a grid of w_T and w_I with the same noise in every cell. Each video is
scored continuously, by where its background and its object's colour lie on the line from the
text's value to the image's (0: the text's, 1: the image's), and the scores are fitted against
log w_T and log w_I with a term per caption/image pair (cells where both weights are positive).
The paper's claim needs slopes of opposite sign (the text weight pulls towards the text, the
image weight towards the image) and a middle region where the image's background and the text's
colour appear together more often than where either weight is 0."""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from ..mini import models
from ..mini.detector import border_colours, nearest_background, nearest_colour, object_masks
from ..mini.world import BACKGROUNDS, COLOURS, render
from .metrics import mean_interval

BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_SEED = 0


def placement(value: np.ndarray, text_value: np.ndarray, image_value: np.ndarray) -> float:
    """Where `value` projects on the line from text_value (0) to image_value (1); unclipped."""
    line = np.asarray(image_value, dtype=np.float64) - np.asarray(text_value, dtype=np.float64)
    return float(np.dot(np.asarray(value, dtype=np.float64) - text_value, line) / np.dot(line, line))


def _unit_rgb(named: dict, name: str) -> np.ndarray:
    return np.asarray(named[name], dtype=np.float64) / 255


def video_scores(video: np.ndarray, text_spec, image_spec) -> dict:
    """Placements of the video's background and object colour between the caption's and the
    image's, and whether it shows the image's background with the text's colour. The object's
    colour is NaN when no frame holds one."""
    frames = np.asarray(video, dtype=np.float64) / 255
    background = border_colours(frames).mean(axis=0)
    masks = object_masks(frames)
    found = masks.any(axis=(1, 2))
    colour = np.concatenate([frame[mask] for frame, mask in zip(frames, masks)]).mean(axis=0) if found.any() else None
    colour_name = nearest_colour(colour) if colour is not None else None
    return {
        "background": placement(background, _unit_rgb(BACKGROUNDS, text_spec.background),
                                _unit_rgb(BACKGROUNDS, image_spec.background)),
        "colour": (placement(colour, _unit_rgb(COLOURS, text_spec.colour), _unit_rgb(COLOURS, image_spec.colour))
                   if colour is not None else float("nan")),
        "text_colour": colour_name == text_spec.colour,
        "image_colour": colour_name == image_spec.colour,
        "text_background": nearest_background(background) == text_spec.background,
        "image_background": nearest_background(background) == image_spec.background,
    }


def fit_log_weights(pairs: Sequence[int], w_text: Sequence[float], w_image: Sequence[float],
                    scores: Sequence[float]) -> tuple[float, float]:
    """Least-squares slopes (b_T, b_I) of score = a_pair + b_T log w_T + b_I log w_I; rows with a
    NaN score are left out."""
    pairs, scores = np.asarray(pairs), np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(scores)
    labels, index = np.unique(pairs[keep], return_inverse=True)
    design = np.zeros((int(keep.sum()), len(labels) + 2))
    design[np.arange(len(index)), index] = 1.0
    design[:, -2] = np.log(np.asarray(w_text, dtype=np.float64)[keep])
    design[:, -1] = np.log(np.asarray(w_image, dtype=np.float64)[keep])
    solution, *_ = np.linalg.lstsq(design, scores[keep], rcond=None)
    return float(solution[-2]), float(solution[-1])


def fit_with_intervals(pairs, w_text, w_image, scores, draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> dict:
    """The slopes and their 95% intervals from resampling whole pairs (a pair's videos share its
    image and caption, so they are not independent)."""
    pairs, columns = np.asarray(pairs), [np.asarray(c, dtype=np.float64) for c in (w_text, w_image, scores)]
    text_slope, image_slope = fit_log_weights(pairs, *columns)
    labels = np.unique(pairs)
    rows_of = {label: np.flatnonzero(pairs == label) for label in labels}
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        chosen = rng.choice(labels, size=len(labels), replace=True)
        rows = np.concatenate([rows_of[label] for label in chosen])
        relabelled = np.repeat(np.arange(len(chosen)), [len(rows_of[label]) for label in chosen])
        samples.append(fit_log_weights(relabelled, *(column[rows] for column in columns)))
    low, high = np.percentile(np.asarray(samples), [2.5, 97.5], axis=0)
    return {"text_slope": {"mean": text_slope, "low": float(low[0]), "high": float(high[0])},
            "image_slope": {"mean": image_slope, "low": float(low[1]), "high": float(high[1])}}


def together_difference(rows: Sequence[dict]) -> dict:
    """How often the image's background and the text's colour appear together in the middle region
    (both weights positive) against where either weight is 0, paired per (pair, seed): each unit's
    rate over its middle cells minus its rate over its edge cells."""
    units: dict = {}
    for row in rows:
        middle = row["w_text"] > 0 and row["w_image"] > 0
        both = float(row["image_background"] and row["text_colour"])
        units.setdefault((row["pair"], row["seed"]), {True: [], False: []})[middle].append(both)
    middle = [np.mean(unit[True]) for unit in units.values()]
    edges = [np.mean(unit[False]) for unit in units.values()]
    return {"middle": mean_interval(middle), "edges": mean_interval(edges),
            "difference": mean_interval([a - b for a, b in zip(middle, edges)])}


def alone(rows: Sequence[dict]) -> dict:
    """What each condition carries by itself: at the largest w_T with w_I 0, how often the video
    takes the text's colour and background; at the largest w_I with w_T 0, the image's."""
    top_text = max(row["w_text"] for row in rows)
    top_image = max(row["w_image"] for row in rows)
    text_only = [row for row in rows if row["w_text"] == top_text and row["w_image"] == 0]
    image_only = [row for row in rows if row["w_image"] == top_image and row["w_text"] == 0]
    return {
        "text_colour_from_text": mean_interval([float(r["text_colour"]) for r in text_only]),
        "text_background_from_text": mean_interval([float(r["text_background"]) for r in text_only]),
        "image_colour_from_image": mean_interval([float(r["image_colour"]) for r in image_only]),
        "image_background_from_image": mean_interval([float(r["image_background"]) for r in image_only]),
    }


def cell_means(rows: Sequence[dict]) -> list[dict]:
    cells = []
    for key in sorted({(row["w_text"], row["w_image"]) for row in rows}):
        inside = [row for row in rows if (row["w_text"], row["w_image"]) == key]
        colours = [row["colour"] for row in inside if np.isfinite(row["colour"])]
        cells.append({"w_text": key[0], "w_image": key[1], "videos": len(inside),
                      "background": float(np.mean([row["background"] for row in inside])),
                      "colour": float(np.mean(colours)) if colours else float("nan"),
                      "object_found": len(colours) / len(inside),
                      "together": float(np.mean([row["image_background"] and row["text_colour"] for row in inside]))})
    return cells


def surface(renderer, files, settings, tick) -> dict:
    from .studies import conflicting_pairs

    pairs = conflicting_pairs(settings.surface_pairs)
    images = [render(image_spec, models.SIZE)[0] for image_spec, _ in pairs]
    jobs = [(index, seed) for index in range(len(pairs)) for seed in settings.surface_seeds]
    rows = []
    for w_text, w_image in itertools.product(settings.surface_weights, repeat=2):
        for start in range(0, len(jobs), settings.surface_batch):
            batch = jobs[start:start + settings.surface_batch]
            for _ in batch:
                tick(f"w_T {w_text:g}, w_I {w_image:g}")
            videos = renderer.text_to_videos(files.base_image, [pairs[i][1].caption for i, _ in batch],
                                              [seed for _, seed in batch], steps=settings.base_steps,
                                              text_weight=w_text, images=[images[i] for i, _ in batch],
                                              image_weight=w_image)
            for (index, seed), video in zip(batch, videos):
                image_spec, text_spec = pairs[index]
                rows.append({"pair": index, "seed": seed, "w_text": w_text, "w_image": w_image,
                             **video_scores(video, text_spec, image_spec)})
    inner = [row for row in rows if row["w_text"] > 0 and row["w_image"] > 0]
    columns = ([row["pair"] for row in inner], [row["w_text"] for row in inner], [row["w_image"] for row in inner])
    return {"pairs": len(pairs), "seeds": len(settings.surface_seeds), "steps": settings.base_steps,
            "weights": list(settings.surface_weights), "cells": cell_means(rows), "alone": alone(rows),
            "fit": {what: fit_with_intervals(*columns, [row[what] for row in inner]) for what in ("background", "colour")},
            "together": together_difference(rows)}


def surface_size(settings) -> int:
    return len(settings.surface_weights) ** 2 * settings.surface_pairs * len(settings.surface_seeds)
