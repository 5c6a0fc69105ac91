"""Forward-process schedules and parameterisation conversions, as pure tensor functions.

Conventions: `alphas_cumprod` (abar) is a float64 tensor over the training timesteps
0..T-1; x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..configs import ScheduleConfig


def make_betas(linear_start: float = 0.00085, linear_end: float = 0.012, timesteps: int = 1000) -> torch.Tensor:
    """The lvdm "linear" schedule: the square of a linspace of square roots."""
    if not 0 < linear_start < linear_end < 1:
        raise ValueError(f"need 0 < linear_start < linear_end < 1, got {linear_start}, {linear_end}")
    if timesteps < 2:
        raise ValueError(f"timesteps must be >= 2, got {timesteps}")
    return torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(abar) so the last step has zero SNR and the first is unchanged
    (Lin et al. 2023, used by UniVG 4.1 and DynamiCrafter 512/1024)."""
    root = alphas_cumprod.double().sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    return root**2


def make_alphas_cumprod(
    linear_start: float = 0.00085,
    linear_end: float = 0.012,
    timesteps: int = 1000,
    zero_terminal_snr: bool = False,
) -> torch.Tensor:
    alphas_cumprod = torch.cumprod(1.0 - make_betas(linear_start, linear_end, timesteps), dim=0)
    return rescale_zero_terminal_snr(alphas_cumprod) if zero_terminal_snr else alphas_cumprod


def alphas_cumprod_for(schedule: ScheduleConfig) -> torch.Tensor:
    return make_alphas_cumprod(schedule.linear_start, schedule.linear_end, schedule.timesteps, schedule.zero_terminal_snr)


def make_scale_arr(base_scale: Optional[float], timesteps: int = 1000, ramp_steps: int = 400) -> torch.Tensor:
    """DynamiCrafter's scale_arr / VideoCrafter's scale_b: during training x0 is multiplied by
    scale_arr[t] (1 -> base over the first `ramp_steps`, then constant). None = all ones."""
    if base_scale is None:
        return torch.ones(timesteps, dtype=torch.float64)
    if not 0 < base_scale <= 1:
        raise ValueError(f"base_scale must be in (0, 1], got {base_scale}")
    ramp = torch.linspace(1.0, base_scale, ramp_steps, dtype=torch.float64)
    return torch.cat([ramp, torch.full((timesteps - ramp_steps,), base_scale, dtype=torch.float64)])


def scale_arr_for(schedule: ScheduleConfig) -> torch.Tensor:
    return make_scale_arr(schedule.scale_base, schedule.timesteps, schedule.scale_steps)


def offset_noise(
    shape, strength: float = 0.1, generator: Optional[torch.Generator] = None, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Gaussian noise plus a per-sample, per-channel constant (paper 4.1, strength 0.1) so the
    model can learn to change a video's mean brightness. shape is [B, C, T, H, W]."""
    if not 0 <= strength <= 1:
        raise ValueError(f"offset noise strength must be in [0, 1], got {strength}")
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if strength:
        offset_shape = tuple(shape[:2]) + (1,) * (len(shape) - 2)
        noise = noise + strength * torch.randn(offset_shape, generator=generator, device=device, dtype=dtype)
    return noise


def _coefficients(alphas_cumprod_t, like: torch.Tensor):
    abar = torch.as_tensor(alphas_cumprod_t, dtype=torch.float64, device=like.device)
    abar = abar.reshape(abar.shape + (1,) * (like.ndim - abar.ndim)) if abar.ndim else abar
    return abar.sqrt().to(like.dtype), (1 - abar).sqrt().to(like.dtype)


def q_sample(x0: torch.Tensor, eps: torch.Tensor, alphas_cumprod_t) -> torch.Tensor:
    """x_t from x0 and eps; alphas_cumprod_t is a scalar or one value per batch entry."""
    a, s = _coefficients(alphas_cumprod_t, x0)
    return a * x0 + s * eps


def v_from_x0_eps(x0, eps, alphas_cumprod_t):
    a, s = _coefficients(alphas_cumprod_t, x0)
    return a * eps - s * x0


def x0_from_eps(x_t, eps, alphas_cumprod_t):
    a, s = _coefficients(alphas_cumprod_t, x_t)
    return (x_t - s * eps) / a


def eps_from_x0(x_t, x0, alphas_cumprod_t):
    a, s = _coefficients(alphas_cumprod_t, x_t)
    return (x_t - a * x0) / s


def x0_from_v(x_t, v, alphas_cumprod_t):
    a, s = _coefficients(alphas_cumprod_t, x_t)
    return a * x_t - s * v


def eps_from_v(x_t, v, alphas_cumprod_t):
    a, s = _coefficients(alphas_cumprod_t, x_t)
    return s * x_t + a * v


def x0_eps_from_output(output: torch.Tensor, x_t: torch.Tensor, alphas_cumprod_t, prediction: str):
    """(x0, eps) from a model output of the given parameterisation ("eps" or "v")."""
    if prediction == "v":
        return x0_from_v(x_t, output, alphas_cumprod_t), eps_from_v(x_t, output, alphas_cumprod_t)
    if prediction == "eps":
        if float(torch.as_tensor(alphas_cumprod_t).min()) <= 0:
            raise ValueError(
                "an eps-prediction model cannot denoise at a zero-SNR timestep (abar = 0); start below the last "
                "timestep or use a v-prediction model"
            )
        return x0_from_eps(x_t, output, alphas_cumprod_t), output
    raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
