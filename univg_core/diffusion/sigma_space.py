"""The UniVG / lvdm forward process seen as k-diffusion sees a model (ComfyUI's samplers):
a state x = x0 + sigma * eps, denoised to x0 at each sigma.

The lvdm process is x_t = sqrt(abar_t) (s_t x0) + sqrt(1 - abar_t) eps, where s_t is
DynamiCrafter's / VideoCrafter's scale_arr (1 for the other models). Dividing by
sqrt(abar_t) s_t gives x_t / (sqrt(abar_t) s_t) = x0 + (sigma_t / s_t) eps with
sigma_t = sqrt((1 - abar_t) / abar_t). So with sigma'_t = sigma_t / s_t every k-diffusion
sampler integrates the trained model's own probability flow, scale_arr included: Euler on
sigma' is lvdm's DDIM with its pred_x0 * s_prev / s_t step. Without scale_arr this is the
usual discrete-VP sigma table.

All functions are pure; `x` is always the k-diffusion state, `sigma` the sigma' of that
state and `scale` the s_t at its timestep (tensors broadcastable to x).
"""

from __future__ import annotations

from typing import Optional

import torch

# ComfyUI's stand-in for abar = 0 at a zero-terminal-SNR schedule's last step: sigma stays finite (~4518)
TERMINAL_ABAR = 4.8973451890853435e-08


def sigma_table(alphas_cumprod: torch.Tensor, scale_arr: Optional[torch.Tensor] = None) -> torch.Tensor:
    """sigma'_t for every training timestep, ascending with t (float64)."""
    abar = alphas_cumprod.double().clamp_min(TERMINAL_ABAR)
    sigma = ((1 - abar) / abar).sqrt()
    if scale_arr is not None:
        if scale_arr.shape != alphas_cumprod.shape:
            raise ValueError(f"scale_arr must have {alphas_cumprod.shape[0]} entries, got {scale_arr.shape[0]}")
        sigma = sigma / scale_arr.double()
    if not bool((sigma[1:] > sigma[:-1]).all()):
        raise ValueError("sigma' must increase with t: this schedule and scale_arr give no k-diffusion parameterisation")
    return sigma


def _vp(sigma: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(abar), sqrt(1 - abar)) of the lvdm timestep behind (sigma', s)."""
    vp_sigma = sigma * scale
    alpha = 1 / (1 + vp_sigma**2).sqrt()
    return alpha, vp_sigma * alpha


def network_input(x: torch.Tensor, sigma: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The lvdm x_t the network was trained on: sqrt(abar) s x."""
    alpha, _ = _vp(sigma, scale)
    return x * scale * alpha


def clean_from_output(output: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, scale: torch.Tensor,
                      prediction: str) -> torch.Tensor:
    """The clean sample x0 from the network's eps or v at state x."""
    if prediction == "eps":
        return x - output * sigma
    if prediction == "v":
        alpha, beta = _vp(sigma, scale)
        scaled_clean = alpha * network_input(x, sigma, scale) - beta * output
        return scaled_clean / scale
    raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")


def output_from_clean(clean: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, scale: torch.Tensor,
                      prediction: str) -> torch.Tensor:
    """The inverse of clean_from_output: the eps or v that gives x0 = `clean` at state x."""
    if prediction == "eps":
        return (x - clean) / sigma
    if prediction == "v":
        alpha, beta = _vp(sigma, scale)
        x_t = network_input(x, sigma, scale)
        eps = (x_t - alpha * scale * clean) / beta
        return alpha * eps - beta * scale * clean
    raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
