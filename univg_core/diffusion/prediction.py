"""The network as the samplers see it: a predictor of the clean sample.

A Denoiser is what a pipeline hands the samplers: (x_t, t) -> the network's raw output
(eps or v, guidance already applied). `CleanSample` wraps it once, as k-diffusion's
external.py wrappers do: it converts eps / v to (x0, eps), undoes DynamiCrafter's /
VideoCrafter's scale_arr (their x0 at step t is the clean sample times scale_arr[t]) and
stops on NaN, so the samplers only do their own arithmetic.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .schedule import x0_eps_from_output

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PREDICTIONS = ("eps", "v")


class CleanSample:
    def __init__(self, denoise: Denoiser, alphas_cumprod: torch.Tensor, prediction: str,
                 scale_arr: Optional[torch.Tensor] = None):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        self.denoise = denoise
        self.prediction = prediction
        self.alphas_cumprod = alphas_cumprod.double().cpu()
        self.scale_arr = scale_arr

    @property
    def timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def abar(self, t: Optional[int]) -> float:
        """alphas_cumprod[t]; 1 for t None, the clean sample."""
        return 1.0 if t is None else float(self.alphas_cumprod[t])

    def scale(self, t: Optional[int]) -> float:
        """The factor the network's x0 carries at t (1 without scale_arr, and for t None)."""
        return 1.0 if self.scale_arr is None or t is None else float(self.scale_arr[t])

    def __call__(self, x: torch.Tensor, t: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean sample, eps) at timestep t; `step` only names the step in a NaN error."""
        output = self.denoise(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        if not torch.isfinite(output).all():
            raise FloatingPointError(non_finite_message(self.denoise, x, t, step, output.dtype))
        x0, eps = x0_eps_from_output(output, x, self.abar(t), self.prediction)
        return x0 / self.scale(t), eps


def non_finite_message(denoise: Denoiser, x: torch.Tensor, t: int, step: int, dtype: torch.dtype) -> str:
    """Where a NaN/inf appeared, and a remedy only where the evidence points to one."""
    where = f"at step {step} (t={t}), the model running in {str(dtype).replace('torch.', '')}"
    if not torch.isfinite(x).all():
        return f"the sampler's input latent already held NaN/inf {where}: an upstream node or setting made it"
    branches = getattr(denoise, "non_finite_branches", None)
    found = branches(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)) if branches else []
    place = f" in the {', '.join(found)} branch{'es' if len(found) > 1 else ''} of the guidance" if found else ""
    message = f"the model returned NaN/inf{place} {where}"
    if dtype == torch.float16:
        return message + ": fp16 can overflow; load the model with dtype fp32 or bf16"
    return message + ": the checkpoint's weights or the conditioning hold non-finite values, or the model diverged"
