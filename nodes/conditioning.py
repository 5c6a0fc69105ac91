"""UniVG Multi-Conditioning: text CONDITIONING plus optional image tokens (the samplers weigh
them separately with w_T and w_I). The CLIP image tokens travel in their own conditioning key, never
spliced onto the text tensor (ComfyUI pads contexts of different lengths by repetition)."""

from __future__ import annotations

import weakref

import torch

IMAGE_TOKENS = "univg_image_tokens"
NULL_IMAGE_TOKENS = "univg_null_image_tokens"
MID_GREY = 0.5


def encode_image_tokens(clip_vision, images: torch.Tensor) -> torch.Tensor:
    """IMAGE [N, H, W, 3] -> [N, 257, 1280]: all tokens of the last layer before ln_post,
    from a 224x224 bicubic resize without crop (DynamiCrafter's preprocessing)."""
    return clip_vision.encode_image(images, crop=False)["last_hidden_state"]


_NULL_TOKENS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def null_image_tokens(clip_vision, like: torch.Tensor) -> torch.Tensor:
    """The null image of UniVG's guidance: the encoding of a mid-grey image (computed once
    per vision encoder; it never changes)."""
    if clip_vision not in _NULL_TOKENS:
        grey = torch.full((1, 224, 224, 3), MID_GREY, dtype=torch.float32)
        _NULL_TOKENS[clip_vision] = encode_image_tokens(clip_vision, grey).cpu()
    return _NULL_TOKENS[clip_vision].to(like)


def first_entry(conditioning, what: str):
    if not conditioning:
        raise ValueError(f"{what} conditioning is empty: connect a CLIP Text Encode node")
    tokens, extras = conditioning[0]
    return tokens, extras


class UniVGConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "positive": ("CONDITIONING", {"tooltip": "text conditioning from CLIP Text Encode"}),
            },
            "optional": {
                "clip_vision": ("CLIP_VISION",),
                "image": ("IMAGE",),
                "clip_vision_output": ("CLIP_VISION_OUTPUT",),
            },
        }

    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "combine"
    CATEGORY = "UniVG"
    DESCRIPTION = "Text and image tokens for Multi-condition Cross Attention (weighed by the samplers' w_T and w_I)."

    def combine(self, positive, clip_vision=None, image=None, clip_vision_output=None):
        text, extras = first_entry(positive, "positive")
        tokens = None
        if clip_vision_output is not None:
            tokens = clip_vision_output["last_hidden_state"]
        elif image is not None:
            if clip_vision is None:
                raise ValueError(
                    "UniVG Multi-Conditioning: an image is connected but no CLIP_VISION; connect the loader's "
                    "clip_vision output (or a CLIP Vision Loader with an OpenCLIP ViT-H/14 model)"
                )
            tokens = encode_image_tokens(clip_vision, image[:1])
        extras = dict(extras)
        if tokens is not None:
            if clip_vision is None:
                raise ValueError(
                    "UniVG Multi-Conditioning: connect clip_vision too: it encodes the mid-grey null image "
                    "that image guidance is measured against"
                )
            extras[IMAGE_TOKENS] = tokens[:1]
            extras[NULL_IMAGE_TOKENS] = null_image_tokens(clip_vision, tokens)
        return ([[text, extras]],)
