"""Table 3's animation half redone as a fair test (issue 37): F_A trained four ways from the same
F_B, each with two training seeds, and sampled two ways, every arm scored on the same held-out
clips and sampling seeds so that arms compare unit by unit (paired).

The arms (ANIMATION_ARMS): BGN on the paper's indices (600, 990); BGN on the same signal-to-noise
ratios of the Mini's zero-terminal-SNR schedule (567, 875); no BGN on t in [0, 999] (Table 3's
ablation); no BGN on t in [0, 875], the range its sampling uses. Every arm starts sampling from the
first frame's forward process at its start (q(v_start | v_C): BGN's start, SDEdit's for the arms
without BGN). The BGN arms are also sampled with the BGN-consistent solver (bgn_sampling).
COMPARISONS names each paired question and its two (arm, sampler) rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..diffusion import bgn
from ..diffusion.schedule import make_alphas_cumprod
from ..mini import models
from ..mini.detector import detect
from ..mini.world import render
from .frechet import video_frechet_distance
from .metrics import trajectory_error
from .paired import paired_difference, verdict
from .studies import held_out_specs

PAPER_WINDOW = bgn.ANIMATION_WINDOW


def snr_matched_animation_window() -> tuple[int, int]:
    """The paper's window moved from SD's schedule to the Mini's zero-terminal-SNR one."""
    return bgn.snr_matched_window(PAPER_WINDOW, make_alphas_cumprod(), make_alphas_cumprod(zero_terminal_snr=True))


@dataclass(frozen=True)
class Arm:
    """How one F_A arm is trained (a BGN window, or none with t drawn from [0, t_max]) and where
    its sampling starts."""

    name: str
    label: str
    window: Optional[tuple[int, int]]
    t_max: Optional[int]
    start: int

    @property
    def samplers(self) -> tuple[str, ...]:
        return ("plain", "consistent") if self.window else ("plain",)


def animation_arms() -> tuple[Arm, ...]:
    matched = snr_matched_animation_window()
    return (
        Arm("bgn_paper", f"BGN {PAPER_WINDOW}", PAPER_WINDOW, None, PAPER_WINDOW[1]),
        Arm("bgn_snr", f"BGN {matched} (SNR-matched)", matched, None, matched[1]),
        Arm("plain_full", "no BGN, t in [0, 999]", None, None, PAPER_WINDOW[1]),
        Arm("plain_window", f"no BGN, t in [0, {matched[1]}]", None, matched[1], matched[1]),
    )


# (question, (arm, sampler) of a, (arm, sampler) of b): each row of the table is a - b
COMPARISONS = (
    ("Table 3 as the paper: BGN (paper's window) - no BGN [0, 999]", ("bgn_paper", "plain"), ("plain_full", "plain")),
    ("on the same t range: BGN (SNR-matched) - no BGN [0, 875]", ("bgn_snr", "plain"), ("plain_window", "plain")),
    ("BGN (paper's window), consistent solver - no BGN [0, 999]", ("bgn_paper", "consistent"), ("plain_full", "plain")),
    ("BGN (SNR-matched), consistent solver - no BGN [0, 875]", ("bgn_snr", "consistent"), ("plain_window", "plain")),
    ("consistent - plain solver, BGN (paper's window)", ("bgn_paper", "consistent"), ("bgn_paper", "plain")),
    ("consistent - plain solver, BGN (SNR-matched)", ("bgn_snr", "consistent"), ("bgn_snr", "plain")),
    ("SNR-matched - paper's window (plain solver)", ("bgn_snr", "plain"), ("bgn_paper", "plain")),
)
# per-video scores: (key, lower is better)
METRICS = (("trajectory_error_px", True), ("colour", False), ("shape", False), ("motion", False), ("all_three", False))


@dataclass(frozen=True)
class StudySize:
    clips: int = 16
    sampling_seeds: tuple[int, ...] = (0, 1)
    steps: int = 25
    text_weight: float = 7.5
    sampler: str = "dpmpp_2m"


def held_out(count: int):
    specs = held_out_specs(count)
    return specs, [render(spec, models.SIZE) for spec in specs]


def video_scores(video: np.ndarray, truth: np.ndarray, spec) -> dict:
    found = detect(video)
    colour, shape, motion = found.colour == spec.colour, found.shape == spec.shape, found.motion == spec.motion
    return {"trajectory_error_px": trajectory_error(found.centroids, detect(truth).centroids, models.SIZE),
            "colour": float(colour),
            "shape": float(shape), "motion": float(motion), "all_three": float(colour and shape and motion)}


def score_arm(renderer, path, arm: Arm, sampler: str, size: StudySize, tick: Callable[[str], None] = lambda _: None) -> dict:
    """Every held-out clip x sampling seed through one trained arm: per-unit scores in a fixed
    order (clip-major), and the Fréchet distance of all its videos to the true clips."""
    specs, truths = held_out(size.clips)
    units = [(index, seed) for index in range(len(specs)) for seed in size.sampling_seeds]
    tick(f"{arm.name} {sampler}")
    videos = renderer.through_keyframes(
        path, "first", [truths[i][0] for i, _ in units], None, [specs[i].caption for i, _ in units],
        [seed for _, seed in units], frames=models.FRAMES, steps=size.steps, text_weight=size.text_weight,
        t_n=arm.start, sampler=size.sampler, bgn_sampling=sampler)
    scores = [video_scores(video, truths[i], specs[i]) for video, (i, _) in zip(videos, units)]
    return {"units": [f"{i}/{seed}" for i, seed in units], "scores": scores,
            "frechet_distance": video_frechet_distance(videos, [truths[i] for i, _ in units])}


def paired_rows(rows: dict, a: tuple, b: tuple, training_seeds: Sequence[int], length: int):
    """The units of (arm, sampler) a and b at one length, over every training seed, checked to be
    the same clips and sampling seeds in the same order: (scores of a, scores of b, training seed
    of each unit, clip of each unit), or None when a row is missing."""
    keys_a, keys_b = ([(*arm, seed, length) for seed in training_seeds] for arm in (a, b))
    if not all(key in rows for key in keys_a + keys_b):
        return None
    for key_a, key_b in zip(keys_a, keys_b):
        if rows[key_a]["units"] != rows[key_b]["units"]:
            raise ValueError(f"{key_a} and {key_b} were scored on different clips or sampling seeds")
    scores_a = [unit for key in keys_a for unit in rows[key]["scores"]]
    scores_b = [unit for key in keys_b for unit in rows[key]["scores"]]
    groups = [seed for seed, key in zip(training_seeds, keys_a) for _ in rows[key]["scores"]]
    clips = [unit.split("/")[0] for key in keys_a for unit in rows[key]["units"]]
    return scores_a, scores_b, groups, clips


def compare(rows: dict, training_seeds: Sequence[int], length: int, comparisons=COMPARISONS, metrics=METRICS) -> list[dict]:
    """The paired differences of `comparisons` at one training length, each with its verdict (none
    for a score whose better direction is None). rows: {(arm, sampler, training seed, length):
    a score_arm-like result}; a comparison missing a row is left out."""
    table = []
    for question, a, b in comparisons:
        paired = paired_rows(rows, a, b, training_seeds, length)
        if paired is None:
            continue
        scores_a, scores_b, groups, clips = paired
        entry = {"question": question, "a": "/".join(a), "b": "/".join(b), "length": length, "metrics": {}}
        for metric, lower in metrics:
            difference = paired_difference([unit[metric] for unit in scores_a], [unit[metric] for unit in scores_b],
                                           groups, clips)
            entry["metrics"][metric] = {**difference, "verdict": "-" if lower is None else verdict(difference, lower)}
        table.append(entry)
    return table


def arm_means(rows: dict, metrics=METRICS) -> list[dict]:
    """Each (arm, sampler, training seed, length)'s mean scores, for the table of every arm."""
    out = []
    for (arm, sampler, seed, length), row in sorted(rows.items(), key=lambda item: (item[0][3], item[0][0], item[0][1], item[0][2])):
        means = {metric: float(np.mean([unit[metric] for unit in row["scores"]])) for metric, _ in metrics}
        if "frechet_distance" in row:
            means["frechet_distance"] = row["frechet_distance"]
        out.append({"arm": arm, "sampler": sampler, "training_seed": seed, "length": length, **means})
    return out
