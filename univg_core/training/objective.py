"""The training objectives of UniVG's three models (paper 3.2-3.4, 4.1) as pure functions.

base (F_B): the generation paradigm, x_t = q(v_T), text dropout 0.5, image dropout 0.1.
animation (F_A): first frame concatenated on the channels, BGN between t_m=600 and t_n=990,
    eps-prediction, text and image dropout 0.1.
interpolation (F_I): the first and last frames concatenated (zeros between, DynamiCrafter's
    interp layout), BGN towards their per-frame linear blend (keyframes.blend), as F_A otherwise.
sr (F_SR): BGN between t_m=0 and t_n=700 towards the degraded clip's latents, v-prediction,
    text dropout 0.1, no image branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..diffusion import bgn, keyframes
from ..diffusion.schedule import q_sample, v_from_x0_eps


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    prediction: str
    text_dropout: float
    image_dropout: float
    bgn_window: Optional[tuple[int, int]] = None
    concat_first_frame: bool = False  # keyframes concatenated on the input channels
    keyframes: str = "first"  # keyframes.MODES: which frames of the clip are given
    concat_layout: str = "repeat"  # keyframes.LAYOUTS
    uses_lowres: bool = False
    uses_image: bool = True


TASKS = {
    "base": TaskSpec("base", "univg_base", "eps", text_dropout=0.5, image_dropout=0.1),
    "animation": TaskSpec(
        "animation", "univg_animation", "eps", text_dropout=0.1, image_dropout=0.1,
        bgn_window=bgn.ANIMATION_WINDOW, concat_first_frame=True,
    ),
    "interpolation": TaskSpec(
        "interpolation", "univg_interpolation", "eps", text_dropout=0.1, image_dropout=0.1,
        bgn_window=bgn.ANIMATION_WINDOW, concat_first_frame=True, keyframes="first_last", concat_layout="sparse",
    ),
    "sr": TaskSpec(
        "sr", "univg_sr", "v", text_dropout=0.1, image_dropout=0.0,
        bgn_window=bgn.SUPER_RESOLUTION_WINDOW, uses_lowres=True, uses_image=False,
    ),
}


def timestep_range(spec: TaskSpec, window: Optional[tuple[int, int]], timesteps: int,
                   t_max: Optional[int] = None) -> tuple[int, int]:
    """Inclusive range t is drawn from. A BGN model is only ever sampled from t_n down, so
    training spends no steps above t_n; a model without BGN up to t_max (default the last)."""
    if window is None:
        return 0, timesteps - 1 if t_max is None else t_max
    return 0, window[1]


def clip_keyframes(spec: TaskSpec, latents: torch.Tensor) -> keyframes.Keyframes:
    """The clip's own frames the task is given (its first, or its first and last)."""
    return keyframes.keyframes_for(spec.keyframes, latents[:, :, 0], latents.shape[2], last=latents[:, :, -1])


def there_and_back(frames: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """The clip played forward to its middle and back: frame i shows frame min(i, T-1-i), so the
    last frame is the first (a loop's keyframes)."""
    count = frames.shape[dim]
    order = torch.tensor([min(i, count - 1 - i) for i in range(count)], device=frames.device)
    return frames.index_select(dim, order)


def condition_latents(spec: TaskSpec, latents: torch.Tensor, lowres: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """v_C of the BGN forward process: the first frame repeated (animation), the first and last
    frames' blend (interpolation), or the degraded clip's latents (super-resolution)."""
    if spec.concat_first_frame:
        return keyframes.blend(clip_keyframes(spec, latents))
    if spec.uses_lowres:
        if lowres is None:
            raise ValueError("the sr task needs the degraded clip's latents")
        return lowres
    return None


def noisy_input_and_target(
    spec: TaskSpec,
    latents: torch.Tensor,
    condition: Optional[torch.Tensor],
    eps: torch.Tensor,
    t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    window: Optional[tuple[int, int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(UNet input, regression target). latents v_T and condition v_C are [B, C, T, h, w];
    t holds one timestep per batch entry."""
    abar = alphas_cumprod[t.long().cpu()].to(latents.device)
    if window is None:
        x_t = q_sample(latents, eps, abar)
        target = eps if spec.prediction == "eps" else v_from_x0_eps(latents, eps, abar)
    else:
        t_m, t_n = window
        x_t, biased = bgn.q_sample_bgn(latents, condition, eps, t, t_m, t_n, alphas_cumprod.to(latents.device))
        target = bgn.training_target(latents, biased, t, alphas_cumprod.to(latents.device), spec.prediction)
    if spec.concat_first_frame:
        x_t = torch.cat([x_t, keyframes.concat_latent(clip_keyframes(spec, latents), spec.concat_layout)], dim=1)
    return x_t.to(latents.dtype), target.to(latents.dtype)
