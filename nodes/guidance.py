"""UniVG's multi-condition guidance assembled from ComfyUI CONDITIONING: the text tokens of
the positive and negative prompts, the image tokens and null image of UniVG Multi-Conditioning."""

from __future__ import annotations

import logging
from typing import Optional

import torch

from ..univg_core.diffusion.guidance import Condition, make_guided_denoiser, unet_model_fn
from .conditioning import IMAGE_TOKENS, NULL_IMAGE_TOKENS, first_entry
from .model import UniVGModel
from .progress import check_interrupt

log = logging.getLogger("univg")


def text_tokens(conditioning, what: str, model: UniVGModel, device, dtype) -> torch.Tensor:
    tokens, _ = first_entry(conditioning, what)
    width = model.unet.config.context_dim
    if tokens.shape[-1] != width:
        raise ValueError(
            f"the {what} text conditioning is {tokens.shape[-1]}-wide; this model needs {width} "
            f"(OpenCLIP ViT-H, the SD2 text encoder): encode the prompt with the UniVG loader's CLIP"
        )
    return tokens.to(device=device, dtype=dtype)


def guided_denoiser(
    model: UniVGModel, positive, negative, w_text: float, w_image: float, fps: int, device, use_image: bool = True,
    guidance_from_t: int = 0, branches_per_call: Optional[int] = None,
):
    """UniVG guidance V = F(0) + w_T (F(T) - F(0)) + w_I (F(I) - F(0)) over this model, with
    F(0) = (negative text, null image), F(T) = (positive text, null image), F(I) = (negative text, image);
    below timestep guidance_from_t the nonzero weights are 1; one UNet call batches up to
    branches_per_call of the branches (None: all)."""
    dtype = model.unet.dtype
    positive_text = text_tokens(positive, "positive", model, device, dtype)
    negative_text = text_tokens(negative, "negative", model, device, dtype)
    _, extras = first_entry(positive, "positive")
    image_tokens = extras.get(IMAGE_TOKENS) if use_image else None
    null_image = image = None
    if image_tokens is not None and not model.has_image_branch:
        log.warning("UniVG: this model has no image cross-attention; the image conditioning is ignored")
    elif image_tokens is not None:
        with torch.no_grad():
            image = model.image_proj(image_tokens.to(device=device, dtype=dtype))
            null_image = model.image_proj(extras[NULL_IMAGE_TOKENS].to(device=device, dtype=dtype))
    if image is None:
        w_image = 0.0
    conditions = {
        "null": Condition(negative_text, null_image),
        "text": Condition(positive_text, null_image),
        "image": Condition(negative_text, image),
    }

    unet_call = unet_model_fn(model.unet, fs=fps or model.config.unet.default_fs)

    def interruptible(x, t, text, image_context):
        check_interrupt()
        return unet_call(x, t, text, image_context)

    return make_guided_denoiser(
        interruptible, "multi", conditions, w_text, w_image, guidance_rescale=model.config.guidance_rescale,
        guidance_from_t=guidance_from_t, branches_per_call=branches_per_call,
    )
