"""Probes of what a text-to-video UNet reads, without sampling: its v-loss on the same noised
clips under edited captions (does swapping the motion word cost it anything?), and how much its
output changes when the frames come in another order (can it tell the first frame from the last?).

A model that reads a word pays for the wrong word in loss; a model whose output, for frames
given in reverse and reversed back, equals its output for the frames in order cannot place a
moving object by the caption's direction."""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from ..diffusion.schedule import q_sample, v_from_x0_eps
from ..mini.world import COLOURS, ClipSpec, caption_for

# the motion a caption is probed with instead of its own: the opposite direction (growing has none)
OPPOSITE_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up", "growing": "left"}

UNetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t, text tokens) -> output


def opposite_motion_caption(spec: ClipSpec) -> str:
    return caption_for(spec.shape, spec.colour, OPPOSITE_MOTION[spec.motion], spec.background)


def other_colour_caption(spec: ClipSpec) -> str:
    """The caption with the colour two places on in the world's list (always another hue)."""
    names = list(COLOURS)
    colour = names[(names.index(spec.colour) + 2) % len(names)]
    return caption_for(spec.shape, colour, spec.motion, spec.background)


def _noised(latents: torch.Tensor, timestep: int, alphas_cumprod: torch.Tensor, seed: int):
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed), dtype=latents.dtype)
    abar = alphas_cumprod[timestep]
    return q_sample(latents, noise, abar), noise, abar


@torch.no_grad()
def v_losses(model: UNetFn, latents: torch.Tensor, contexts: Mapping[str, torch.Tensor], timestep: int,
             alphas_cumprod: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Mean squared v-prediction error on [B, C, T, h, w] latents noised to `timestep` (the same
    noise for every context), one number per named context [B, tokens, width]."""
    x_t, noise, abar = _noised(latents, timestep, alphas_cumprod, seed)
    target = v_from_x0_eps(latents, noise, abar)
    t = torch.full((len(latents),), timestep)
    return {name: float(((model(x_t, t, context) - target) ** 2).mean()) for name, context in contexts.items()}


@torch.no_grad()
def frame_order_sensitivity(model: UNetFn, latents: torch.Tensor, context: torch.Tensor, timestep: int,
                            alphas_cumprod: torch.Tensor, orders: Mapping[str, torch.Tensor],
                            seed: int = 0) -> dict[str, float]:
    """Per named order: || f(x in that order) put back in order - f(x) || / || f(x) ||, 0 for a
    model that treats the frames as a set (or for the identity order). f(x) is computed once."""
    x_t, _, _ = _noised(latents, timestep, alphas_cumprod, seed)
    t = torch.full((len(latents),), timestep)
    plain = model(x_t, t, context)
    changes = {}
    for name, order in orders.items():
        reordered = model(x_t[:, :, order], t, context)[:, :, torch.argsort(order)]
        changes[name] = float((reordered - plain).norm() / plain.norm())
    return changes


def reversed_order(frames: int) -> torch.Tensor:
    return torch.arange(frames - 1, -1, -1)


def adjacent_pairs_swapped(frames: int) -> torch.Tensor:
    """0 2 1 4 3 6 5 7 for 8 frames: neighbours in the middle traded, the ends kept."""
    order = torch.arange(frames)
    for first in range(1, frames - 1, 2):
        order[first], order[first + 1] = first + 1, first
    return order
