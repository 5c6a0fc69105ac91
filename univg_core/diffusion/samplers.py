"""DDIM and DPM-Solver++ (2M) over any denoiser (x_t, t) -> model output, seen through
prediction.CleanSample as a predictor of the clean sample.

Both can start part-way (t_start: the editing paradigm and BGN start there), report each
step through `callback(step, total, x, x0)` and are cancelled by a callback that raises
(ComfyUI's interrupt) or returns False. `scale_arr` honours DynamiCrafter's / VideoCrafter's
x0 scaling: the model's x0 at step t is the clean sample times scale_arr[t].

DDIM's last step, by default, is lvdm's (`final_step="original"`): it lands on
alphas_cumprod[0] (not abar = 1) and leaves the scale_arr factor of the last timestep in
place, so real VideoCrafter / DynamiCrafter weights give the same latent as the original
repositories. `final_step="clean"` lands on abar = 1 with the scale undone: the clean sample.
DPM-Solver++ always ends on the clean sample, as k-diffusion's sample_dpmpp_2m does.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .prediction import CleanSample, Denoiser

Callback = Callable[[int, int, torch.Tensor, torch.Tensor], Optional[bool]]
AfterStep = Callable[[torch.Tensor, float], torch.Tensor]
SPACINGS = ("uniform", "uniform_trailing")
FINAL_STEPS = ("original", "clean")


class SamplingCancelled(RuntimeError):
    pass


def make_timesteps(steps: int, spacing: str = "uniform", t_start: Optional[int] = None, timesteps: int = 1000) -> torch.Tensor:
    """Descending timesteps. Without t_start, "uniform" is the lvdm DDIM spacing
    (k*T/steps + 1: 981, 961, ..., 1 for 50 steps) and "uniform_trailing" starts at T-1
    (999, 979, ..., 19). With t_start the sequence starts exactly there and is trailing."""
    if spacing not in SPACINGS:
        raise ValueError(f"timestep spacing must be one of {SPACINGS}, got {spacing!r}")
    if t_start is not None and not 0 <= t_start <= timesteps - 1:
        raise ValueError(f"t_start must be in [0, {timesteps - 1}], got {t_start}")
    top = timesteps - 1 if t_start is None else t_start
    if not 1 <= steps <= top + 1:
        raise ValueError(f"steps must be in [1, {top + 1}] when starting at t={top}, got {steps}")
    k = torch.arange(steps, dtype=torch.float64)
    if spacing == "uniform" and t_start is None:
        ascending = (k * (timesteps // steps)).floor() + 1
        if ascending[-1] > timesteps - 1:  # steps == T: the +1 shift would leave the schedule
            ascending -= 1
        return ascending.flip(0).long()
    return (top - (k * (top + 1) / steps).round()).long()


def report_step(callback: Optional[Callback], step: int, total: int, x: torch.Tensor, x0: torch.Tensor) -> None:
    if callback is not None and callback(step, total, x, x0) is False:
        raise SamplingCancelled(f"sampling cancelled at step {step + 1}/{total}")


def timestep_list(timesteps, count: int) -> list[int]:
    timesteps = torch.as_tensor(timesteps).long().flatten()
    if len(timesteps) == 0 or int(timesteps.max()) >= count or int(timesteps.min()) < 0:
        raise ValueError(f"timesteps must be in [0, {count - 1}]")
    return timesteps.tolist()


def ddim_sample(
    denoise: Denoiser,
    x: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps,
    prediction: str,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    scale_arr: Optional[torch.Tensor] = None,
    after_step: Optional[AfterStep] = None,
    final_step: str = "original",
) -> torch.Tensor:
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if final_step not in FINAL_STEPS:
        raise ValueError(f"final_step must be one of {FINAL_STEPS}, got {final_step!r}")
    model = CleanSample(denoise, alphas_cumprod, prediction, scale_arr)
    steps = timestep_list(timesteps, model.timesteps)
    for i, t in enumerate(steps):
        t_next = steps[i + 1] if i + 1 < len(steps) else None
        x0, eps = model(x, t, i)
        abar_t = model.abar(t)
        if t_next is None and final_step == "original":
            # lvdm: ddim_alphas_prev starts with alphas_cumprod[0], ddim_scale_arr_prev repeats its first entry
            abar_next, scale_next = model.abar(0), model.scale(t)
        else:
            abar_next, scale_next = model.abar(t_next), model.scale(t_next)
        x0 = x0 * scale_next
        sigma = eta * math.sqrt(max(0.0, (1 - abar_next) / (1 - abar_t) * (1 - abar_t / abar_next))) if abar_t < 1 else 0.0
        x = math.sqrt(abar_next) * x0 + math.sqrt(max(0.0, 1 - abar_next - sigma**2)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if after_step is not None:
            x = after_step(x, abar_next)
        report_step(callback, i, len(steps), x, x0)
    return x


def _half_lambda(abar: float) -> float:
    """lambda = log(alpha / sigma); -inf at zero SNR, +inf at abar = 1."""
    if abar <= 0:
        return -math.inf
    if abar >= 1:
        return math.inf
    return 0.5 * math.log(abar / (1 - abar))


def dpmpp_2m_sample(
    denoise: Denoiser,
    x: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps,
    prediction: str,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    scale_arr: Optional[torch.Tensor] = None,
    after_step: Optional[AfterStep] = None,
) -> torch.Tensor:
    """Multistep DPM-Solver++ with data prediction (Lu et al. 2022), second order after the
    first step; deterministic (generator unused, kept for a uniform signature)."""
    model = CleanSample(denoise, alphas_cumprod, prediction, scale_arr)
    steps = timestep_list(timesteps, model.timesteps)
    previous_x0, previous_h = None, None
    for i, t in enumerate(steps):
        t_next = steps[i + 1] if i + 1 < len(steps) else None
        x0, _ = model(x, t, i)
        abar_t, abar_next = model.abar(t), model.abar(t_next)
        lambda_t, lambda_next = _half_lambda(abar_t), _half_lambda(abar_next)
        h = lambda_next - lambda_t
        if previous_x0 is None or math.isinf(h) or math.isinf(previous_h):
            data = x0
        else:
            r = previous_h / h
            data = (1 + 0.5 / r) * x0 - (0.5 / r) * previous_x0
        data_next = data * model.scale(t_next)
        if abar_next >= 1:
            x = data_next
        else:
            sigma_ratio = math.sqrt((1 - abar_next) / (1 - abar_t))
            x = sigma_ratio * x - math.sqrt(abar_next) * math.expm1(-h) * data_next
        previous_x0, previous_h = x0, h
        if after_step is not None:
            x = after_step(x, abar_next)
        report_step(callback, i, len(steps), x, x0)
    return x


SAMPLERS = {"dpmpp_2m": dpmpp_2m_sample, "ddim": ddim_sample}


def sample(sampler: str, *args, eta: float = 0.0, final_step: str = "original", **kwargs) -> torch.Tensor:
    """Run a sampler by name; eta and final_step apply to DDIM alone."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
    if sampler == "ddim":
        kwargs.update(eta=eta, final_step=final_step)
    return SAMPLERS[sampler](*args, **kwargs)
