"""Guidance as pure functions of model outputs, and a denoiser that evaluates every
condition of a guidance rule in one batched model call.

UniVG's multi-condition guidance (paper 4.3): V = F(0) + w_T (F(T) - F(0)) + w_I (F(I) - F(0)),
with F(0) = (null text, null image), F(T) = (text, null image), F(I) = (null text, image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch


def require_finite(**values: float) -> None:
    """Refuse NaN and inf settings by name before any sampling (NaN passes every range check)."""
    for name, value in values.items():
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number, got {value}")


def classifier_free(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)


def multi_condition(
    null: torch.Tensor,
    text: Optional[torch.Tensor],
    image: Optional[torch.Tensor],
    w_text: float,
    w_image: float,
) -> torch.Tensor:
    """UniVG: F(0) + w_T (F(T) - F(0)) + w_I (F(I) - F(0)); a zero weight needs no output."""
    out = null
    if w_text:
        out = out + w_text * (text - null)
    if w_image:
        out = out + w_image * (image - null)
    return out


def nested_text_image(
    null: torch.Tensor, image_only: torch.Tensor, full: torch.Tensor, w_text: float, w_image: float
) -> torch.Tensor:
    """DynamiCrafter's three-pass form: image guidance from the null prediction, text
    guidance on top of the image-conditioned one."""
    return null + w_image * (image_only - null) + w_text * (full - image_only)


def weights_at(t: float, w_text: float, w_image: float, guidance_from_t: int) -> tuple[float, float]:
    """Guidance in a limited interval (Kynkaanniemi et al. 2024): the weights at timestep t are
    the ones given from guidance_from_t up, and 1 for each nonzero one below it (the conditional
    prediction itself)."""
    if t < guidance_from_t:
        return float(w_text != 0), float(w_image != 0)
    return w_text, w_image


def single_branch(rule: str, w_text: float, w_image: float) -> Optional[str]:
    """The branch a rule's guided output is equal to at these weights (so only it needs the
    model), or None when it mixes several: CFG at scale 1 is its cond, multi-condition guidance
    at (w_T 1, w_I 0) is F(T), DynamiCrafter's nested form at (1, 1) is its full branch."""
    if rule == "none":
        return "cond"
    if rule == "cfg":
        return {1.0: "cond", 0.0: "uncond"}.get(float(w_text))
    if rule == "multi":
        return {(0.0, 0.0): "null", (1.0, 0.0): "text", (0.0, 1.0): "image"}.get((float(w_text), float(w_image)))
    if rule == "nested":
        return {(0.0, 0.0): "null", (0.0, 1.0): "image_only", (1.0, 1.0): "full"}.get((float(w_text), float(w_image)))
    return None


def rescale(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023): match the per-sample std of the conditional
    prediction, blended by phi (0.7 for DynamiCrafter)."""
    if not 0 <= phi <= 1:
        raise ValueError(f"guidance rescale must be in [0, 1], got {phi}")
    if phi == 0:
        return guided
    dims = tuple(range(1, guided.ndim))
    ratio = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return phi * guided * ratio + (1 - phi) * guided


@dataclass(frozen=True)
class Condition:
    """One branch of a guidance rule: text tokens and optional image tokens for the UNet."""

    text: torch.Tensor
    image: Optional[torch.Tensor] = None


ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def _batchable(conditions: Sequence[Condition]) -> bool:
    first = conditions[0]
    for c in conditions[1:]:
        if c.text.shape != first.text.shape:
            return False
        if (c.image is None) != (first.image is None):
            return False
        if c.image is not None and c.image.shape != first.image.shape:
            return False
    return True


def _batched_call(model: ModelFn, x: torch.Tensor, t: torch.Tensor, conditions: Sequence[Condition]) -> list[torch.Tensor]:
    if len(conditions) == 1:
        return [model(x, t, conditions[0].text, conditions[0].image)]
    batch = x.shape[0]
    xs = torch.cat([x] * len(conditions))
    ts = torch.cat([t] * len(conditions))
    text = torch.cat([c.text.expand(batch, -1, -1) for c in conditions])
    image = None
    if conditions[0].image is not None:
        image = torch.cat([c.image.expand(batch, -1, -1) for c in conditions])
    return list(model(xs, ts, text, image).chunk(len(conditions)))


def evaluate_conditions(
    model: ModelFn, x: torch.Tensor, t: torch.Tensor, conditions: Sequence[Condition],
    branches_per_call: Optional[int] = None,
) -> list[torch.Tensor]:
    """Model outputs for every condition: batched calls of up to `branches_per_call` conditions
    (None: all of them in one) when the token shapes agree, one call per condition otherwise
    (e.g. a long prompt against an empty negative)."""
    if branches_per_call is not None and branches_per_call < 1:
        raise ValueError(f"branches_per_call must be at least 1, got {branches_per_call}")
    if not _batchable(conditions):
        branches_per_call = 1
    group = len(conditions) if branches_per_call is None else branches_per_call
    outputs: list[torch.Tensor] = []
    for start in range(0, len(conditions), group):
        outputs += _batched_call(model, x, t, conditions[start:start + group])
    return outputs


def make_guided_denoiser(
    model: ModelFn,
    rule: str,
    conditions: dict[str, Condition],
    w_text: float = 7.5,
    w_image: float = 0.0,
    guidance_rescale: float = 0.0,
    guidance_from_t: int = 0,
    branches_per_call: Optional[int] = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A denoiser (x_t, t) -> guided model output.

    guidance_from_t: guide only at timesteps t >= this (`weights_at`); 0: at every step, as the paper.
    branches_per_call: how many conditions one model call batches (None: all; 1: one after another,
    the least memory; the outputs are the same).

    rules and the conditions they read:
      "cfg":           cond, uncond                  (w_text is the scale)
      "multi":         null, text, image             (UniVG; a zero weight skips its branch)
      "nested":        null, image_only, full        (DynamiCrafter)
      "none":          cond
    """
    needed = {
        "cfg": ["uncond", "cond"],
        "multi": ["null"] + (["text"] if w_text else []) + (["image"] if w_image else []),
        "nested": ["null", "image_only", "full"],
        "none": ["cond"],
    }
    require_finite(w_text=w_text, w_image=w_image, guidance_rescale=guidance_rescale)
    if rule not in needed:
        raise ValueError(f"guidance rule must be one of {sorted(needed)}, got {rule!r}")
    names = needed[rule]
    missing = [name for name in names if name not in conditions]
    if missing:
        raise ValueError(f"guidance rule {rule!r} needs conditions {names}; missing {missing}")

    if guidance_from_t < 0:
        raise ValueError(f"guidance_from_t must be a timestep >= 0, got {guidance_from_t}")
    if branches_per_call is not None and branches_per_call < 1:
        raise ValueError(f"branches_per_call must be at least 1, got {branches_per_call}")

    # the conditional prediction guidance rescale matches: the text branch, else the image's
    reference = {"cfg": "cond", "multi": names[1] if len(names) > 1 else "null", "nested": "full", "none": "cond"}[rule]

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w_text_now, w_image_now = w_text, w_image
        if guidance_from_t:  # reading t costs a device sync: only when asked
            w_text_now, w_image_now = weights_at(float(t.reshape(-1)[0]), w_text, w_image, guidance_from_t)
        only = single_branch(rule, w_text_now, w_image_now)
        if only is not None and (only == reference or not guidance_rescale):  # rescaling to itself is the identity
            return model(x, t, conditions[only].text, conditions[only].image)
        outputs = dict(zip(names, evaluate_conditions(model, x, t, [conditions[n] for n in names], branches_per_call)))
        if rule == "cfg":
            guided = classifier_free(outputs["uncond"], outputs["cond"], w_text_now)
        elif rule == "multi":
            guided = multi_condition(outputs["null"], outputs.get("text"), outputs.get("image"), w_text_now, w_image_now)
        else:
            guided = nested_text_image(outputs["null"], outputs["image_only"], outputs["full"], w_text_now, w_image_now)
        return rescale(guided, outputs[reference], guidance_rescale)

    def non_finite_branches(x: torch.Tensor, t: torch.Tensor) -> list[str]:
        """Which conditions' model outputs hold NaN/inf at (x, t): asked only after a failure."""
        outputs = evaluate_conditions(model, x, t, [conditions[n] for n in names], branches_per_call)
        return [name for name, output in zip(names, outputs) if not torch.isfinite(output).all()]

    denoise.non_finite_branches = non_finite_branches
    return denoise


def unet_model_fn(unet: Callable, fs=None) -> ModelFn:
    """Adapt a UNet3D (x, t, context=, image_context=, fs=) to the ModelFn of this module."""

    def model(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, image: Optional[torch.Tensor]) -> torch.Tensor:
        return unet(x, t, context=text, image_context=image, fs=fs)

    return model
