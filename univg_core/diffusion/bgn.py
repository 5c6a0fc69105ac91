"""Biased Gaussian Noise (UniVG paper 3.4) as pure tensor functions.

For t_m <= t < t_n the noise is shifted towards the condition:
    eps'_t = eps + sqrt(abar_t) / sqrt(1 - abar_t) * (t - t_m) / (t_n - t_m) * (v_C - v_T)
so q(v_t) = sqrt(abar_t) v_T + sqrt(1 - abar_t) eps'_t runs from the target distribution
at t_m to the condition's forward process at t_n. Below t_m it is the standard process from
v_T (weight 0); from t_n on it is the standard process from v_C (weight 1).
"""

from __future__ import annotations

import torch

from ..configs import ANIMATION_WINDOW, SUPER_RESOLUTION_WINDOW  # noqa: F401  (re-exported: bgn.ANIMATION_WINDOW)


def check_window(t_m: int, t_n: int, timesteps: int = 1000) -> None:
    if not (0 <= t_m < t_n <= timesteps - 1):
        raise ValueError(f"BGN window needs 0 <= t_m < t_n <= {timesteps - 1}, got t_m={t_m}, t_n={t_n}")


def bgn_weight(t: torch.Tensor, t_m: int, t_n: int) -> torch.Tensor:
    """(t - t_m) / (t_n - t_m) clamped to [0, 1], float64."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return ((t - t_m) / (t_n - t_m)).clamp(0.0, 1.0)


def _broadcast_over(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    values = values.to(like.device)
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim)).to(like.dtype)


def biased_noise(
    eps: torch.Tensor,
    v_cond: torch.Tensor,
    v_target: torch.Tensor,
    t: torch.Tensor,
    t_m: int,
    t_n: int,
    alphas_cumprod: torch.Tensor,
) -> torch.Tensor:
    """eps'_t of paper 3.4 (t: one timestep per batch entry, or a scalar)."""
    check_window(t_m, t_n, len(alphas_cumprod))
    t = torch.as_tensor(t, device=alphas_cumprod.device).long()
    abar = alphas_cumprod[t].double()
    shift = (abar.sqrt() / (1 - abar).sqrt()) * bgn_weight(t.cpu(), t_m, t_n).to(abar.device)
    return eps + _broadcast_over(shift, eps) * (v_cond - v_target)


def q_sample_bgn(
    v_target: torch.Tensor,
    v_cond: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
    t_m: int,
    t_n: int,
    alphas_cumprod: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The biased forward process of Figure 3(b): returns (v_t, eps'_t)."""
    biased = biased_noise(eps, v_cond, v_target, t, t_m, t_n, alphas_cumprod)
    abar = alphas_cumprod[torch.as_tensor(t, device=alphas_cumprod.device).long()].double()
    v_t = _broadcast_over(abar.sqrt(), v_target) * v_target + _broadcast_over((1 - abar).sqrt(), v_target) * biased
    return v_t, biased


def training_target(
    v_target: torch.Tensor, biased_eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction: str
) -> torch.Tensor:
    """What the model learns to output under BGN: eps' itself (eps-prediction) or
    v = sqrt(abar) eps' - sqrt(1 - abar) v_T (v-prediction); either way the standard
    x0 formula applied to the prediction recovers v_T."""
    if prediction == "eps":
        return biased_eps
    if prediction == "v":
        abar = alphas_cumprod[torch.as_tensor(t, device=alphas_cumprod.device).long()].double()
        return _broadcast_over(abar.sqrt(), v_target) * biased_eps - _broadcast_over((1 - abar).sqrt(), v_target) * v_target
    raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")


def inference_start(v_cond: torch.Tensor, eps: torch.Tensor, t_n: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """q(v_{t_n} | v_C): where sampling of a BGN-trained model begins."""
    if not 0 <= t_n < len(alphas_cumprod):
        raise ValueError(f"t_n must be in [0, {len(alphas_cumprod) - 1}], got {t_n}")
    abar = alphas_cumprod[t_n].double()
    return float(abar.sqrt()) * v_cond + float((1 - abar).sqrt()) * eps


def snr_matched_timestep(t: int, reference: torch.Tensor, target: torch.Tensor) -> int:
    """The timestep of the `target` schedule (alphas_cumprod) whose signal-to-noise ratio
    abar / (1 - abar) is nearest, in log, to the `reference` schedule's at t."""
    def log_snr(abar: torch.Tensor) -> torch.Tensor:
        abar = abar.double()
        return (abar / (1 - abar)).clamp_min(1e-30).log()

    wanted = log_snr(reference[t:t + 1])
    return int((log_snr(target) - wanted).abs().argmin())


def snr_matched_window(window: tuple[int, int], reference: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """A BGN window given on the `reference` schedule (the paper's indices are on SD's) moved to
    the timesteps of `target` with the same signal-to-noise ratios: on a zero-terminal-SNR
    schedule the same index holds far less of the condition."""
    t_m, t_n = (snr_matched_timestep(t, reference, target) for t in window)
    t_m = min(t_m, t_n - 1)
    check_window(t_m, t_n, len(target))
    return t_m, t_n
