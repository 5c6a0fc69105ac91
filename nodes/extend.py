"""UniVG Extend Video: continue a video from its last frame with an animation model, so that
chained nodes make a long video whose seams are exact (the last frame given is the next clip's
first, pinned in the latent and kept as pixels)."""

from __future__ import annotations

import torch

from .latents import decode_latents
from .progress import check_interrupt
from .samplers import (
    DDIM_FINAL_STEP,
    GUIDANCE_FROM_T,
    VAE_TOOLTIP,
    UniVGAnimationSampler,
    _common_inputs,
)


class UniVGExtendVideo:
    @classmethod
    def INPUT_TYPES(cls):
        inputs = _common_inputs(50, frames=False)
        inputs["vae"] = ("VAE", {"tooltip": VAE_TOOLTIP})
        inputs["video"] = ("IMAGE", {"tooltip": "the video to continue, as an image batch (its last frame starts the "
                                                "new part); width and height multiples of 64"})
        inputs["new_frames"] = ("INT", {"default": 15, "min": 1, "max": 255,
                                        "tooltip": "frames added after the last one (the model renders one more: "
                                                   "the last frame itself, which is not repeated)"})
        inputs["bgn_t_n"] = ("INT", {"default": -1, "min": -1, "max": 999,
                                     "tooltip": "where sampling starts (BGN t_n); -1: the model's"})
        inputs["frames_per_chunk"] = ("INT", {"default": 4, "min": 1, "max": 256,
                                              "tooltip": "frames decoded per VAE call: lower it to save memory"})
        return {"required": inputs, "optional": {"ddim_final_step": DDIM_FINAL_STEP, "guidance_from_t": GUIDANCE_FROM_T}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("the input video followed by the new frames (chain another Extend Video for more)",)
    FUNCTION = "extend"
    CATEGORY = "UniVG"
    DESCRIPTION = ("Continues a video from its last frame with an animation model (UniVG F_A, DynamiCrafter): the "
                   "last frame is the new part's first keyframe, so the join has no seam; chain the node for videos "
                   "longer than one window.")
    SEARCH_ALIASES = ["extend video", "continue video", "long video", "autoregressive", "chain clips", "video extension"]

    def extend(self, model, positive, negative, seed, steps, text_weight, image_weight, fps, sampler, vae, video,
               new_frames, bgn_t_n, frames_per_chunk, ddim_final_step="original", guidance_from_t=0):
        if video.ndim != 4 or video.shape[0] < 1:
            raise ValueError(f"video must be an image batch [frames, height, width, channels], got {list(video.shape)}")
        last = video[-1:, :, :, :3]
        (latent,) = UniVGAnimationSampler().sample(
            model, positive, negative, seed, steps, text_weight, image_weight, new_frames + 1, fps, sampler, vae,
            last, bgn_t_n, ddim_final_step=ddim_final_step, guidance_from_t=guidance_from_t)
        check_interrupt()
        added = decode_latents(vae, latent["samples"][1:], frames_per_chunk)
        return (torch.cat([video[..., :3], added.to(video)], dim=0),)
