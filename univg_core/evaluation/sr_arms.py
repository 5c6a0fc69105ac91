"""Table 3's super-resolution half redone as a fair test (issue 37): F_SR trained four ways from
the same start (F_B with the SR VAE's scale factor), each with two training seeds, sampled on the
same held-out clips and sampling seeds, compared in pairs; and the preservation-vs-detail frontier:
each BGN arm's (content, detail) point per unit against the curve SDEdit with the no-BGN model
draws as its start t moves (SDEDIT_STRENGTHS), with a sign test.

The arms (SR_ARMS): BGN on the paper's window (0, 700); BGN on its signal-to-noise match on the
Mini's schedule (0, 656); no BGN on t in [0, 999] (Table 3's ablation), sampled from 700; no BGN on
t in [0, 700], the range its sampling uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..diffusion import bgn
from ..diffusion.schedule import make_alphas_cumprod
from ..mini import models
from ..mini.sr_eval import TEST_SEED, content_kept
from ..mini.sr_quality import sr_scores
from ..mini.world import make_specs, render
from .bgn_arms import Arm
from .bgn_arms import compare as bgn_compare
from .frechet import frechet_distance, highpass_features
from .paired import side_of_curve, sign_test
from .studies import bicubic_upsample

PAPER_WINDOW = bgn.SUPER_RESOLUTION_WINDOW
SDEDIT_STRENGTHS = (0.1, 0.3, 0.5, 0.7, 0.9)  # SDEdit with the no-BGN [0, 999] arm
WINDOW_SDEDIT_STRENGTHS = (0.1, 0.3, 0.5, 0.7)  # and with the no-BGN [0, 700] arm, inside its range
QUICK_SDEDIT_STRENGTHS = (0.3, 0.7)  # --quick, both arms: one start of its own and one the arm's own row gives
CONTENT, DETAIL = "content_psnr", "detail_coherence"  # the frontier's axes


def sr_arms() -> tuple[Arm, ...]:
    matched = bgn.snr_matched_window(PAPER_WINDOW, make_alphas_cumprod(), make_alphas_cumprod(zero_terminal_snr=True))
    return (
        Arm("sr_bgn_paper", f"BGN {PAPER_WINDOW}", PAPER_WINDOW, None, PAPER_WINDOW[1]),
        Arm("sr_bgn_snr", f"BGN {matched} (SNR-matched)", matched, None, matched[1]),
        Arm("sr_plain_full", "no BGN, t in [0, 999]", None, None, PAPER_WINDOW[1]),
        Arm("sr_plain_window", f"no BGN, t in [0, {PAPER_WINDOW[1]}]", None, PAPER_WINDOW[1], PAPER_WINDOW[1]),
    )


COMPARISONS = (
    ("Table 3 as the paper: BGN (0, 700) - no BGN [0, 999], both from 700", ("sr_bgn_paper", "plain"), ("sr_plain_full", "plain")),
    ("on the same t range: BGN (0, 700) - no BGN [0, 700]", ("sr_bgn_paper", "plain"), ("sr_plain_window", "plain")),
    ("BGN (0, 700), consistent solver - no BGN [0, 700]", ("sr_bgn_paper", "consistent"), ("sr_plain_window", "plain")),
    ("consistent - plain solver, BGN (0, 700)", ("sr_bgn_paper", "consistent"), ("sr_bgn_paper", "plain")),
    ("consistent - plain solver, BGN (SNR-matched)", ("sr_bgn_snr", "consistent"), ("sr_bgn_snr", "plain")),
    ("SNR-matched - paper's window (plain solver)", ("sr_bgn_snr", "plain"), ("sr_bgn_paper", "plain")),
)
METRICS = (("content_psnr", False), ("content_kept", False), ("detail_coherence", False), ("texture_right", False),
           ("edge_psnr", False), ("psnr", False), ("energy_above_nyquist_share", None))


@dataclass(frozen=True)
class SRStudySize:
    clips: int = 12
    sampling_seeds: tuple[int, ...] = (0, 1)
    steps: int = 7
    text_weight: float = models.SR_TEXT_WEIGHT


def score(renderer, path, strength: float, sampler: str, size: SRStudySize) -> dict:
    """Every test clip (sr_eval's TEST_SEED) x sampling seed super-resolved from `strength`:
    per-unit scores against the textured 128x128 truth, clip-major, and each video's high-pass features."""
    rows, units, features = [], [], []
    for index, spec in enumerate(make_specs(size.clips, TEST_SEED, models.FRAMES)):
        low, truth = render(spec, models.SIZE), render(spec, 2 * models.SIZE, textured=True)
        for seed in size.sampling_seeds:
            frames = renderer.super_resolve(path, low, spec.caption, seed=seed, steps=size.steps, strength=strength,
                                            text_weight=size.text_weight, bgn_sampling=sampler)
            rows.append({**sr_scores(frames, spec, truth, low), "content_kept": float(content_kept(frames, low))})
            units.append(f"{index}/{seed}")
            features.append(highpass_features(frames).tolist())
    return {"units": units, "scores": rows, FEATURES: features}


def compare(rows: dict, training_seeds: Sequence[int], length: int) -> list[dict]:
    """COMPARISONS' paired differences at one length; rows as bgn_arms.compare's."""
    return bgn_compare(rows, training_seeds, length, COMPARISONS, METRICS)


def frontier(points: dict, curves: dict, units: Sequence[str], training_seeds: Sequence[int]) -> dict:
    """Per training seed, on how many clips a BGN arm's (content, detail) points lie above / below
    the Pareto frontier of the same unit's SDEdit points (every curve's, every start), and the
    sign test's p over clips (a clip counts by the majority of its sampling seeds). points: {seed:
    a BGN arm's unit scores}; curves: {seed: [unit scores of one SDEdit setting, ...]}; units:
    "clip/sampling seed" of each position, the same in all."""
    clips = [unit.split("/")[0] for unit in units]
    out = {}
    for seed in training_seeds:
        sides = []
        for position, ours in enumerate(points[seed]):
            curve = [(setting[position][CONTENT], setting[position][DETAIL]) for setting in curves[seed]]
            sides.append(side_of_curve((ours[CONTENT], ours[DETAIL]), curve))
        per_clip = [int(np.sign(sum(side for side, c in zip(sides, clips) if c == clip))) for clip in dict.fromkeys(clips)]
        above, below = per_clip.count(1), per_clip.count(-1)
        out[str(seed)] = {"above": above, "below": below, "on": per_clip.count(0), "p": sign_test(above, below),
                          "units_above": sides.count(1), "units_below": sides.count(-1)}
    return out


def mean_point(scores: list[dict]) -> dict:
    return {key: float(np.mean([row[key] for row in scores])) for key in (CONTENT, DETAIL, "content_kept", "texture_right")}


# The distribution-level detail score: a Fréchet distance at 128 px on high-passed frames
# (frechet.highpass_features) of each arm's videos against the test clips' textured truth.
FEATURES = "highpass_features"
BOOTSTRAP_RESAMPLES = 1000
REFERENCE_SEED = TEST_SEED + 1  # other truths: what the truth's own sampling gives


def truth_features(size: SRStudySize) -> np.ndarray:
    """High-pass features of the test clips' textured 128x128 truth, one row per clip."""
    return np.stack([highpass_features(render(spec, 2 * models.SIZE, textured=True))
                     for spec in make_specs(size.clips, TEST_SEED, models.FRAMES)])


def reference_distances(size: SRStudySize, truths: np.ndarray) -> dict:
    """The scale's two fixed points: bicubic from the 64x64 input (no detail added; one video a
    clip) and twice as many truths of another world seed."""
    specs = make_specs(size.clips, TEST_SEED, models.FRAMES)
    bicubic = np.stack([highpass_features(bicubic_upsample(render(spec, models.SIZE), 2 * models.SIZE)) for spec in specs])
    others = np.stack([highpass_features(render(spec, 2 * models.SIZE, textured=True))
                       for spec in make_specs(2 * size.clips, REFERENCE_SEED, models.FRAMES)])
    return {"bicubic": frechet_distance(bicubic, truths), "other truths": frechet_distance(others, truths)}


def _unit_clips(row: dict) -> np.ndarray:
    return np.array([int(unit.split("/")[0]) for unit in row["units"]])


def set_distance(rows: Sequence[dict], truths: np.ndarray) -> float:
    """Every video of `rows` (one per training seed, say) against the truth."""
    return frechet_distance(np.concatenate([np.asarray(row[FEATURES]) for row in rows]), truths)


def bootstrap_difference(rows_a: Sequence[dict], rows_b: Sequence[dict], truths: np.ndarray,
                         resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Fréchet distance of a's videos minus b's, both against the truth, pooled over the rows (one
    per training seed, the same clips and sampling seeds in a and b): the difference, each row
    pair's own, and a 95% percentile interval of a paired bootstrap over clips (the same clips
    drawn, with their multiplicity, for a, b and the truth)."""
    for row_a, row_b in zip(rows_a, rows_b):
        if row_a["units"] != row_b["units"]:
            raise ValueError("the arms' rows were scored on different clips or sampling seeds")
    features_a = [np.asarray(row[FEATURES]) for row in rows_a]
    features_b = [np.asarray(row[FEATURES]) for row in rows_b]
    clips = [_unit_clips(row) for row in rows_a]

    def difference(chosen: np.ndarray) -> float:
        pick = [np.concatenate([np.flatnonzero(units == clip) for clip in chosen]) for units in clips]
        a = np.concatenate([f[p] for f, p in zip(features_a, pick)])
        b = np.concatenate([f[p] for f, p in zip(features_b, pick)])
        return frechet_distance(a, truths[chosen]) - frechet_distance(b, truths[chosen])

    every = np.arange(len(truths))
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = np.array([difference(rng.integers(0, len(truths), len(truths))) for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5])
    by_group = [set_distance([a], truths) - set_distance([b], truths) for a, b in zip(rows_a, rows_b)]
    return {"mean": difference(every), "low": float(low), "high": float(high), "by_group": by_group}


def frechet_verdict(entry: dict) -> str:
    """Lower is better: a verdict where the interval excludes 0 and every training seed agrees."""
    groups = entry["by_group"]
    if entry["high"] < 0 and all(value < 0 for value in groups):
        return "a better"
    if entry["low"] > 0 and all(value > 0 for value in groups):
        return "a worse"
    return "no measurable difference"


def frechet_comparisons(rows: dict, truths: np.ndarray, training_seeds: Sequence[int], length: int,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> list[dict]:
    """COMPARISONS on the high-pass Fréchet distance at one length (rows with features only)."""
    table = []
    for question, a, b in COMPARISONS:
        keys_a, keys_b = ([(*arm, seed, length) for seed in training_seeds] for arm in (a, b))
        if not all(key in rows and FEATURES in rows[key] for key in keys_a + keys_b):
            continue
        entry = bootstrap_difference([rows[key] for key in keys_a], [rows[key] for key in keys_b], truths, resamples)
        table.append({"question": question, "a": "/".join(a), "b": "/".join(b), "length": length,
                      **entry, "verdict": frechet_verdict(entry)})
    return table


def set_frontier(points: dict, sdedit: dict) -> dict:
    """Per training seed, which SDEdit rows have both more mean content PSNR and a lower distance
    than the BGN arm's. points: {seed: (content, distance)}; sdedit: {seed: {name: (content, distance)}}."""
    return {str(seed): [name for name, (content, distance) in sdedit[seed].items()
                        if content >= point[0] and distance <= point[1]] for seed, point in points.items()}
