"""UniVG Multi-Conditioning: text CONDITIONING plus optional image tokens (the samplers weigh
them separately with w_T and w_I). The CLIP image tokens travel in their own conditioning key, never
spliced onto the text tensor (ComfyUI pads contexts of different lengths by repetition)."""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict

import torch

import comfy.model_management

from ..univg_core.models.clip_image import CLIP_MEAN, CLIP_STD, PREPROCESSING, clip_pixels, null_image

# keys of a CONDITIONING entry's dict (the native model's extra_conds reads them)
IMAGE_TOKENS = "univg_image_tokens"
NULL_IMAGE_TOKENS = "univg_null_image_tokens"
CONCAT_LATENT = "concat_latent_image"  # core's key: the first frame's VAE latent, [1, C, h, w]
KEYFRAME_CONCAT = "univg_keyframe_concat"  # the whole concat, [frames, C, h, w]: keyframes at their frames, zeros between
FPS = "univg_fps"


@torch.no_grad()  # the tokens are kept (null-image cache, conditioning): never with a graph of the tower's weights
def encode_image_tokens(clip_vision, images: torch.Tensor, preprocess: str = "original") -> torch.Tensor:
    """IMAGE [N, H, W, 3] in [0, 1] -> [N, 257, 1280]: every token of the last layer before
    ln_post, from a 224x224 resize without crop. "original" is DynamiCrafter's / VideoCrafter1-I2V's
    preprocessing (univg_core.models.clip_image); "comfyui" is ComfyUI's own encode_image(crop=False)."""
    if preprocess == "comfyui":
        return clip_vision.encode_image(images, crop=False)["last_hidden_state"]
    pixels = clip_pixels(
        images[..., :3].movedim(-1, 1),
        preprocess,
        size=getattr(clip_vision, "image_size", 224),
        mean=getattr(clip_vision, "image_mean", None) or CLIP_MEAN,
        std=getattr(clip_vision, "image_std", None) or CLIP_STD,
    )
    comfy.model_management.load_model_gpu(clip_vision.patcher)
    # the tower itself, as encode_image calls it, minus ComfyUI's resize and 8-bit rounding
    hidden = clip_vision.model(pixel_values=pixels.to(clip_vision.load_device), intermediate_output=-2)[0]
    return hidden.to(comfy.model_management.intermediate_device())


# set by the UniVG loader on the CLIP_VISION it makes: the identity of the file its weights came from
SOURCE = "univg_source"
_NULL_TOKENS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_TOKENS_BY_SOURCE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
KEPT_ENCODINGS = 16


def _by_source(clip_vision, what: tuple, encode) -> torch.Tensor:
    """encode(), kept for a tower loaded from the same unchanged file (a loader that runs again,
    another workflow's loader of the same tower), the last KEPT_ENCODINGS of them; computed
    every time for a CLIP_VISION of unknown origin."""
    source = getattr(clip_vision, SOURCE, None)
    if source is None:
        return encode()
    key = (source, str(getattr(clip_vision, "dtype", "")), str(getattr(clip_vision, "load_device", "")), *what)
    if key in _TOKENS_BY_SOURCE:
        _TOKENS_BY_SOURCE.move_to_end(key)
    else:
        _TOKENS_BY_SOURCE[key] = encode().cpu()
        while len(_TOKENS_BY_SOURCE) > KEPT_ENCODINGS:
            _TOKENS_BY_SOURCE.popitem(last=False)
    return _TOKENS_BY_SOURCE[key].clone()


def image_tokens(clip_vision, images: torch.Tensor, preprocess: str = "original") -> torch.Tensor:
    """encode_image_tokens, kept per tower file, preprocessing and image (by its bytes)."""
    pixels = images.detach().cpu().float().contiguous()
    digest = hashlib.sha1(pixels.numpy().tobytes()).hexdigest()
    tokens = _by_source(clip_vision, ("image", preprocess, tuple(pixels.shape), digest),
                        lambda: encode_image_tokens(clip_vision, images, preprocess))
    return tokens.to(comfy.model_management.intermediate_device())


def null_image_tokens(clip_vision, like: torch.Tensor, preprocess: str = "original") -> torch.Tensor:
    """The null image of UniVG's guidance: the encoding of a mid-grey image, as the original
    models' unconditional branch (their embedder applied to zeros in [-1, 1]); computed once
    per vision encoder (or tower file) and preprocessing."""
    cached = _NULL_TOKENS.setdefault(clip_vision, {})
    if preprocess not in cached:
        grey = null_image().movedim(1, -1)
        cached[preprocess] = _by_source(clip_vision, ("null", preprocess),
                                        lambda: encode_image_tokens(clip_vision, grey, preprocess)).cpu()
    return cached[preprocess].to(like)


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
                "clip_vision": ("CLIP_VISION", {"tooltip": "the vision tower that turns the image into tokens "
                                                           "(the loader's clip_vision, or Load CLIP Vision)"}),
                "image": ("IMAGE", {"tooltip": "the image condition (first frame); needs clip_vision"}),
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "or tokens already made by CLIP Vision "
                                                                         "Encode (in place of clip_vision + image)"}),
                "negative": ("CONDITIONING", {"tooltip": "the negative prompt; its copy with the null image attached "
                                                         "comes out of 'negative', for core KSampler's negative"}),
                "preprocess": (list(PREPROCESSING), {
                    "default": "original",
                    "tooltip": "how the image becomes CLIP's 224x224 input: 'original' = DynamiCrafter / VideoCrafter "
                               "(kornia antialiased bicubic, no crop, no 8-bit rounding; what their weights were "
                               "trained on); 'comfyui' = ComfyUI's CLIP Vision Encode without crop",
                }),
            },
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("conditioning", "negative")
    OUTPUT_TOOLTIPS = (
        "the text conditioning with the image's tokens attached, for a UniVG sampler's or the guider's positive",
        "the negative with the null image's tokens attached: core KSampler's negative (F(0) of the guidance); "
        "the negative input passed on unchanged when no image is given (nothing when negative is not connected)",
    )
    FUNCTION = "combine"
    CATEGORY = "UniVG"
    DESCRIPTION = ("Text and image tokens for Multi-condition Cross Attention (weighed by the samplers' w_T and w_I, "
                   "or by core KSampler's cfg when the negative output carries the null image).")
    SEARCH_ALIASES = ["image conditioning", "text and image", "multi-condition", "MCA", "clip vision"]

    def combine(self, positive, clip_vision=None, image=None, clip_vision_output=None, preprocess="original",
                negative=None):
        if preprocess not in PREPROCESSING:
            raise ValueError(f"UniVG Multi-Conditioning: preprocess must be one of {list(PREPROCESSING)}, got {preprocess!r}")
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
            tokens = image_tokens(clip_vision, image[:1], preprocess)
        extras = dict(extras)
        if tokens is not None:
            if clip_vision is None:
                raise ValueError(
                    "UniVG Multi-Conditioning: connect clip_vision too: it encodes the mid-grey null image "
                    "that image guidance is measured against"
                )
            extras[IMAGE_TOKENS] = tokens[:1]
            extras[NULL_IMAGE_TOKENS] = null_image_tokens(clip_vision, tokens, preprocess)
        if negative is not None and tokens is not None:
            negative = with_extras(negative, {IMAGE_TOKENS: extras[NULL_IMAGE_TOKENS],
                                              NULL_IMAGE_TOKENS: extras[NULL_IMAGE_TOKENS]})
        return ([[text, extras]], negative)


def with_extras(conditioning, extras: dict):
    """A copy of every entry of `conditioning` with `extras` added to its dict."""
    return [[tokens, {**entry, **extras}] for tokens, entry in conditioning]

