"""UniVG Extend Video: continue a video from its last frame with an animation model, so that
chained nodes make a long video whose seams are exact (the last frame given is the next clip's
first, pinned in the latent and kept as pixels)."""

from __future__ import annotations

import torch

from .latents import decode_latents, encode_images
from .progress import check_interrupt
from .samplers import (
    BGN_SAMPLING,
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
        inputs["new_frames"] = ("INT", {"default": 15, "min": 1, "max": 255,
                                        "tooltip": "frames added after the last one (the model renders one more: "
                                                   "the last frame itself, which is not repeated)"})
        inputs["bgn_t_n"] = ("INT", {"default": -1, "min": -1, "max": 999,
                                     "tooltip": "where sampling starts (BGN t_n); -1: the model's"})
        inputs["frames_per_chunk"] = ("INT", {"default": 4, "min": 1, "max": 256,
                                              "tooltip": "frames decoded per VAE call: lower it to save memory"})
        optional = {
            "video": ("IMAGE", {"tooltip": "the video to continue, as an image batch (its last frame starts the new "
                                           "part); width and height multiples of 64. Give this or video_latent"}),
            "video_latent": ("LATENT", {"tooltip": "the video to continue, as a LATENT of frames (a sampler's or an "
                                                   "Extend Video's): its last latent frame starts the new part as it is. "
                                                   "Give this or video"}),
            "ddim_final_step": DDIM_FINAL_STEP, "guidance_from_t": GUIDANCE_FROM_T, "bgn_sampling": BGN_SAMPLING,
        }
        return {"required": inputs, "optional": optional}

    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("images", "latent")
    OUTPUT_TOOLTIPS = ("the input video followed by the new frames (chain another Extend Video for more)",
                       "the same video as a LATENT of frames: the input's latents followed by the new ones")
    FUNCTION = "extend"
    CATEGORY = "UniVG"
    DESCRIPTION = ("Continues a video (IMAGE or LATENT) from its last frame with an animation model (UniVG F_A, "
                   "DynamiCrafter): the last frame is the new part's first keyframe, so the join has no seam; chain "
                   "the node for videos longer than one window.")
    SEARCH_ALIASES = ["extend video", "continue video", "long video", "autoregressive", "chain clips", "video extension"]

    def extend(self, model, positive, negative, seed, steps, text_weight, image_weight, fps, sampler, vae, new_frames,
               bgn_t_n, frames_per_chunk, video=None, video_latent=None, ddim_final_step="original", guidance_from_t=0,
               bgn_sampling="plain"):
        if (video is None) == (video_latent is None):
            raise ValueError("UniVG Extend Video: connect the video to continue to exactly one of video (IMAGE) "
                             "and video_latent (LATENT)")
        if video is not None:
            if video.ndim != 4 or video.shape[0] < 1:
                raise ValueError(f"UniVG Extend Video: video must be an image batch [frames, height, width, channels], "
                                 f"got {list(video.shape)}")
            images, latents = video[..., :3], None
            last_image, last_latent = images[-1:], None
        else:
            latents = video_latent["samples"]
            if latents.ndim != 4 or latents.shape[0] < 1:
                raise ValueError(f"UniVG Extend Video: video_latent must hold frames [frames, channels, height, width], "
                                 f"got {list(latents.shape)}")
            images, last_latent = None, latents[-1:]
            last_image = decode_latents(vae, last_latent)[..., :3]
        (latent,) = UniVGAnimationSampler().sample(
            model, positive, negative, seed, steps, text_weight, image_weight, new_frames + 1, fps, sampler, vae,
            last_image, bgn_t_n, ddim_final_step=ddim_final_step, guidance_from_t=guidance_from_t,
            bgn_sampling=bgn_sampling, first_latent=last_latent)
        check_interrupt()
        new_latents = latent["samples"][1:]
        if latents is None:
            latents = encode_images(vae, images, frames_per_chunk).to(new_latents)
        joined_latents = torch.cat([latents.to(new_latents), new_latents], dim=0)
        if images is None:
            joined_images = decode_latents(vae, joined_latents, frames_per_chunk)[..., :3]
        else:
            joined_images = torch.cat([images, decode_latents(vae, new_latents, frames_per_chunk).to(images)], dim=0)
        return (joined_images, {"samples": joined_latents})
