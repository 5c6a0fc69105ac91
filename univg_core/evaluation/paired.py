"""Paired differences between two arms of a study, scored on the same units (a clip, a sampling
seed and a training seed each): the mean difference with its 95% interval, the difference within
each training seed, and how many units each arm won; a sign test and the side of a trade-off
curve for the super-resolution frontier. Pure numpy.

A clip's units are not independent (the same clip under every sampling and training seed, and a
sampling seed draws the same noise for every clip), so the interval is taken over clusters, one
per clip: the t interval of the clips' mean differences."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _t_cdf(x: float, df: int) -> float:
    """Student's t distribution function, by Simpson's rule on its density from 0 to x."""
    constant = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    grid = np.linspace(0.0, abs(x), 2001)
    density = constant * (1 + grid ** 2 / df) ** (-(df + 1) / 2)
    step = grid[1] - grid[0]
    area = step / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    return 0.5 + math.copysign(area, x)


def t_quantile_975(df: int) -> float:
    """The 97.5% point of Student's t with `df` degrees of freedom (1.96 as df grows)."""
    if df < 1:
        return math.nan
    if df == 1:
        return math.tan(math.pi * 0.475)
    low, high = 0.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < 0.975 else (low, middle)
    return (low + high) / 2


def paired_difference(a: Sequence[float], b: Sequence[float], groups: Sequence[object],
                      clusters: Sequence[object] | None = None) -> dict:
    """a[i] - b[i] over the units i (the same clip, sampling seed and training seed in both arms).
    The interval: mean +- t(0.975, k - 1) standard errors of the k clusters' (clips') mean
    differences (every unit its own cluster when `clusters` is None); `by_group` holds the mean
    difference within each training seed (groups[i]), which a claim must hold in each of."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    groups = list(groups)
    clusters = list(range(len(a))) if clusters is None else list(clusters)
    if not (len(a) == len(b) == len(groups) == len(clusters)) or len(a) == 0:
        raise ValueError(f"paired scores need as many units in both arms, groups and clusters, got "
                         f"{len(a)}, {len(b)}, {len(groups)}, {len(clusters)}")
    difference = a - b
    means = np.array([difference[[c == cluster for c in clusters]].mean() for cluster in dict.fromkeys(clusters)])
    mean = float(difference.mean())
    count = len(means)
    half = t_quantile_975(count - 1) * float(means.std(ddof=1)) / math.sqrt(count) if count > 1 else math.nan
    by_group = {str(group): float(difference[[g == group for g in groups]].mean()) for group in dict.fromkeys(groups)}
    return {"n": len(difference), "clusters": count, "mean": mean, "low": mean - half, "high": mean + half,
            "by_group": by_group, "a_higher": int((difference > 0).sum()), "b_higher": int((difference < 0).sum()),
            "equal": int((difference == 0).sum())}


def verdict(difference: dict, lower_is_better: bool) -> str:
    """"a better" / "a worse" when the interval excludes 0 and every group's mean agrees with the
    sign; else "no measurable difference"."""
    low, high, groups = difference["low"], difference["high"], difference["by_group"].values()
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no measurable difference"
    if high < 0 and all(value < 0 for value in groups):
        return "a better" if lower_is_better else "a worse"
    if low > 0 and all(value > 0 for value in groups):
        return "a worse" if lower_is_better else "a better"
    return "no measurable difference"


def sign_test(above: int, below: int) -> float:
    """Two-sided p-value of `above` against `below` (ties left out) if either were as likely."""
    total = above + below
    if total == 0:
        return 1.0
    extreme = max(above, below)
    tail = sum(math.comb(total, k) for k in range(extreme, total + 1)) / 2 ** total
    return min(1.0, 2 * tail)


def side_of_curve(point: tuple[float, float], curve: Sequence[tuple[float, float]]) -> int:
    """+1 when point (x, y) lies above the Pareto frontier of the `curve` points (at each point, the
    most y any point with at least its x reaches; linear between points, held beyond the ends),
    -1 below, 0 on it. A point that some curve point beats on both x and y is never above."""
    xs, ys = (np.asarray(values, dtype=np.float64) for values in zip(*sorted(curve)))
    envelope = np.maximum.accumulate(ys[::-1])[::-1]
    level = float(np.interp(point[0], xs, envelope))
    return int(np.sign(point[1] - level))
