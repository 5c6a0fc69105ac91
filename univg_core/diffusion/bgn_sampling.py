"""Sampling that follows the marginals of the Biased-Gaussian-Noise forward process
(docs/bgn_sampling.md derives it beside the paper's eq.).

A BGN model was trained on
    x_t = alpha_t [(1 - w_t) x0 + w_t v_C] + sigma_t eps,    alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t),
w_t = clamp((t - t_m) / (t_n - t_m), 0, 1), not on alpha_t x0 + sigma_t eps, which DDIM and
DPM-Solver++ assume: even with a perfect x0 their state at the next step carries less of the
bias than the model saw there. Subtracting the condition's part,
    z_t = x_t - alpha_t w_t v_C = alpha_t (1 - w_t) x0 + sigma_t eps,
is an ordinary diffusion with signal scale a_t = alpha_t (1 - w_t) and noise scale sigma_t, so
the usual solvers run on z with a_t in place of alpha_t (lambda_t = log(a_t / sigma_t), -inf
where w_t = 1) and the network's x0 estimate unchanged. Where w_t = 0 (t <= t_m) these steps
are the plain ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .bgn import bgn_weight, check_window
from .prediction import CleanSample, Denoiser
from .samplers import AfterStep, Callback, report_step, timestep_list

BGN_SAMPLERS = ("ddim", "dpmpp_2m")


@dataclass(frozen=True)
class Marginal:
    """The BGN forward process at one timestep: x_t = alpha [(1 - weight) x0 + weight v_C] + sigma eps."""

    alpha: float
    sigma: float
    weight: float

    @property
    def signal(self) -> float:
        """a_t: how much of x0 the state holds."""
        return self.alpha * (1.0 - self.weight)

    @property
    def log_snr(self) -> float:
        """lambda_t = log(a_t / sigma_t): -inf with no x0 in the state, +inf for the clean sample."""
        if self.signal <= 0:
            return -math.inf
        if self.sigma <= 0:
            return math.inf
        return math.log(self.signal / self.sigma)

    def mean(self, x0: torch.Tensor, v_cond: torch.Tensor) -> torch.Tensor:
        return self.alpha * ((1.0 - self.weight) * x0 + self.weight * v_cond)


CLEAN = Marginal(1.0, 0.0, 0.0)


def marginal_at(abar: float, t: int, t_m: int, t_n: int) -> Marginal:
    return Marginal(math.sqrt(abar), math.sqrt(max(0.0, 1.0 - abar)), float(bgn_weight(t, t_m, t_n)))


def ddim_step(x: torch.Tensor, x0: torch.Tensor, v_cond: torch.Tensor, now: Marginal, after: Marginal) -> torch.Tensor:
    """Deterministic DDIM between BGN marginals: the noise the state holds about its BGN mean,
    carried to the next marginal."""
    eps = (x - now.mean(x0, v_cond)) / now.sigma
    return after.mean(x0, v_cond) + after.sigma * eps


def dpmpp_step(x: torch.Tensor, data: torch.Tensor, v_cond: torch.Tensor, now: Marginal, after: Marginal) -> torch.Tensor:
    """One DPM-Solver++ update of z = x - alpha w v_C with signal scale a_t (`data`: the x0
    estimate, or the multistep combination of the last two)."""
    if after.sigma <= 0:
        return after.mean(data, v_cond)
    z = x - now.alpha * now.weight * v_cond
    if now.signal <= 0 and after.signal <= 0:
        z_after = (after.sigma / now.sigma) * z
    else:
        h = after.log_snr - now.log_snr
        z_after = (after.sigma / now.sigma) * z - after.signal * math.expm1(-h) * data
    return z_after + after.alpha * after.weight * v_cond


def bgn_consistent_sample(
    sampler: str,
    denoise: Denoiser,
    x: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps,
    prediction: str,
    v_cond: torch.Tensor,
    t_m: int,
    t_n: int,
    callback: Optional[Callback] = None,
    after_step: Optional[AfterStep] = None,
) -> torch.Tensor:
    """DDIM (eta 0) or DPM-Solver++ (2M) from x at timesteps[0] down to the clean sample, every
    state on the BGN marginal of its timestep for the model's x0 estimate. `v_cond` is the BGN
    condition (F_A: the first frame repeated; keyframes: their blend; F_SR: the upsampled
    low-resolution latent); after_step(x, abar) as the plain samplers'."""
    if sampler not in BGN_SAMPLERS:
        raise ValueError(f"BGN-consistent sampling runs {', '.join(BGN_SAMPLERS)}, got {sampler!r}")
    check_window(t_m, t_n, len(alphas_cumprod))
    model = CleanSample(denoise, alphas_cumprod, prediction)
    steps = timestep_list(timesteps, model.timesteps)
    v_cond = v_cond.to(x)
    previous_x0, previous_h = None, None
    for i, t in enumerate(steps):
        t_next = steps[i + 1] if i + 1 < len(steps) else None
        x0, _ = model(x, t, i)
        now = marginal_at(model.abar(t), t, t_m, t_n)
        after = CLEAN if t_next is None else marginal_at(model.abar(t_next), t_next, t_m, t_n)
        if sampler == "ddim":
            x = ddim_step(x, x0, v_cond, now, after)
        else:
            h = after.log_snr - now.log_snr
            data = x0
            if previous_x0 is not None and math.isfinite(h) and math.isfinite(previous_h):
                r = previous_h / h
                data = (1 + 0.5 / r) * x0 - (0.5 / r) * previous_x0
            x = dpmpp_step(x, data, v_cond, now, after)
            previous_x0, previous_h = x0, h
        if after_step is not None:
            x = after_step(x, after.alpha ** 2)
        report_step(callback, i, len(steps), x, x0)
    return x
