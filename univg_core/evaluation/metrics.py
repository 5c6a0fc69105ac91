"""Per-video metrics against ground truth, as pure functions of uint8 frames [T, H, W, 3]
(and of the detector's centroids), plus the mean with its 95% interval."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"videos must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a, b, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; infinite for identical inputs."""
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    offsets = np.arange(size) - (size - 1) / 2
    line = np.exp(-(offsets**2) / (2 * sigma**2))
    return line / line.sum()


def _blur(images: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable filter over the last two axes, 'valid' region only (as Wang et al.)."""
    size = len(window)
    rows = sum(window[i] * images[..., i : images.shape[-2] - size + 1 + i, :] for i in range(size))
    return sum(window[i] * rows[..., i : rows.shape[-1] - size + 1 + i] for i in range(size))


def ssim(a, b, peak: float = 255.0) -> float:
    """Mean structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1 0.01, K2 0.03) over every frame and colour channel; 1 for identical inputs."""
    a, b = _pair(a, b)
    if a.ndim != 4 or min(a.shape[1:3]) < 11:
        raise ValueError(f"SSIM needs frames [T, H, W, C] of at least 11x11 pixels, got {list(a.shape)}")
    a, b = np.moveaxis(a, -1, 1), np.moveaxis(b, -1, 1)  # [T, C, H, W]
    window = _gaussian_window()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _blur(a, window), _blur(b, window)
    var_a = _blur(a * a, window) - mu_a**2
    var_b = _blur(b * b, window) - mu_b**2
    covariance = _blur(a * b, window) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * covariance + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def trajectory_error(centroids: Sequence[Optional[tuple[float, float]]],
                     truth: Sequence[Optional[tuple[float, float]]], size: int) -> float:
    """Mean distance in pixels between the detected centroid and the true one per frame (both
    in frame units, x right, y down; the truth is the detector's track of the true clip, since
    a triangle's area centroid is not the centre it was drawn around). A frame where nothing
    was detected counts as half the frame's diagonal away: losing the object is worse than any
    placement in it. Frames without a true centroid are left out."""
    if len(centroids) != len(truth):
        raise ValueError(f"{len(centroids)} detected frames against {len(truth)} true ones")
    lost = size * math.sqrt(2) / 2
    errors = [lost if found is None else size * math.hypot(found[0] - true[0], found[1] - true[1])
              for found, true in zip(centroids, truth) if true is not None]
    if not errors:
        raise ValueError("the true clip has no frame with an object")
    return float(np.mean(errors))


def first_frame_error(video, image) -> float:
    """Mean absolute difference of frame 0 from the input image, in 0-255 levels."""
    first, image = _pair(np.asarray(video)[0], image)
    return float(np.mean(np.abs(first - image)))


def mean_interval(values: Sequence[float]) -> dict:
    """Mean and its 95% interval (normal approximation, mean +- 1.96 s / sqrt(n)). Infinite
    values (PSNR of exact copies) are kept out and counted, so they do not make the mean infinite."""
    values = [float(v) for v in values]
    finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    result = {"n": len(values), "infinite": len(values) - len(finite)}
    if len(finite) == 0:
        return {**result, "mean": math.nan, "low": math.nan, "high": math.nan}
    mean = float(finite.mean())
    half = 1.96 * float(finite.std(ddof=1)) / math.sqrt(len(finite)) if len(finite) > 1 else math.nan
    return {**result, "mean": mean, "low": mean - half, "high": mean + half}
