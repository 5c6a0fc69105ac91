"""The three UniVG sampler nodes: base (F_B), animation (F_A), BGN upscaler (F_SR)."""

from __future__ import annotations

import torch

from ..univg_core.configs import ANIMATION_WINDOW, start_timestep
from ..univg_core.diffusion import keyframes, pipelines
from ..univg_core.diffusion.guidance import require_finite
from ..univg_core.diffusion.samplers import FINAL_STEPS, SAMPLERS
from .guidance import guided_denoiser
from .latents import (
    decode_latents,
    model_space_encoder,
    pixels_to_model_latent,
    seeded_generator,
    to_latent_output,
    to_model_latent,
)
from .model import load_to_device
from .previews import preview_progress
from .progress import check_interrupt

SEED = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                "tooltip": "the noise's seed (drawn on the CPU: the same video on any device)"})
MODEL_TOOLTIP = "a UniVG model from the UniVG Checkpoint Loader"
VAE_TOOLTIP = "the VAE that encodes the frames the model is conditioned on (the loader's, or Load VAE)"
DDIM_FINAL_STEP = (list(FINAL_STEPS), {
    "default": "original",
    "tooltip": "DDIM only. 'original': the last step lands on alphas_cumprod[0] with scale_arr left in place, as the "
               "VideoCrafter / DynamiCrafter repositories do (same video from the same weights); 'clean': it lands "
               "on the clean sample (abar = 1, scale undone)",
})
GUIDANCE_FROM_T = ("INT", {
    "default": 0, "min": 0, "max": 999,
    "tooltip": "guide (w_T, w_I) only at timesteps t >= this, and use the conditional prediction below it (weights "
               "1): 'guidance in a limited interval', which keeps colours that strong guidance shifts. 0: at every "
               "step, as the paper",
})


FPS_INPUT = ("INT", {"default": 0, "min": 0, "max": 60,
                     "tooltip": "the frame-rate / frame-stride condition; 0: the model's own (VideoCrafter2 28 fps, "
                                "DynamiCrafter-512 fs 24, UniVG Mini 8)"})


def check_size(width: int, height: int, multiple: int = 64) -> None:
    if width % multiple or height % multiple or width < multiple or height < multiple:
        raise ValueError(
            f"width and height must be positive multiples of {multiple}, got {width}x{height} "
            f"(put an Image Scale node before, or pick e.g. 512x320, 576x320, 1280x720)"
        )



def branch_shape(frames: int, height: int, width: int, channels: int = 4) -> tuple[int, int, int, int]:
    """The batch one guidance branch's UNet call sees: frames as the batch, latent height and width."""
    return (frames, channels, height // 8, width // 8)


def guidance_branches(text_weight: float, image_weight: float) -> int:
    """The null branch, text when w_T is not 0, image when w_I is not 0."""
    return 1 + bool(text_weight) + bool(image_weight)


def _common_inputs(steps: int, frames: bool = True) -> dict:
    inputs = {
        "model": ("MODEL", {"tooltip": MODEL_TOOLTIP}),
        "positive": ("CONDITIONING", {"tooltip": "from UniVG Multi-Conditioning or CLIP Text Encode"}),
        "negative": ("CONDITIONING", {"tooltip": "the null text, usually an empty prompt"}),
        "seed": SEED,
        "steps": ("INT", {"default": steps, "min": 1, "max": 1000,
                          "tooltip": "denoising steps (the paper: 50 DPM-Solver steps for F_B and F_A)"}),
        "text_weight": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 30.0, "step": 0.1,
                                  "tooltip": "w_T: how strongly the video follows the text (0: ignore it)"}),
        "image_weight": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                   "tooltip": "w_I: how strongly the video follows the image tokens (0: ignore "
                                              "them; no effect without an image in the conditioning)"}),
    }
    if frames:
        inputs["frames"] = ("INT", {"default": 24, "min": 1, "max": 256,
                                    "tooltip": "frames to generate (the models were trained on 16-24)"})
    inputs["fps"] = FPS_INPUT
    inputs["sampler"] = (list(SAMPLERS), {"default": "dpmpp_2m",
                                          "tooltip": "dpmpp_2m: DPM-Solver++ (2M); ddim: the original repositories'"})
    return inputs


class UniVGBaseSampler:
    """F_B: text-to-video, image-to-video, text+image-to-video from pure noise."""

    @classmethod
    def INPUT_TYPES(cls):
        inputs = _common_inputs(50)
        inputs["width"] = ("INT", {"default": 576, "min": 64, "max": 2048, "step": 64,
                                   "tooltip": "video width in pixels, a multiple of 64"})
        inputs["height"] = ("INT", {"default": 320, "min": 64, "max": 2048, "step": 64,
                                    "tooltip": "video height in pixels, a multiple of 64"})
        return {"required": inputs, "optional": {"ddim_final_step": DDIM_FINAL_STEP, "guidance_from_t": GUIDANCE_FROM_T}}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("the video's latents, one batch entry per frame (decode with UniVG Video VAE Decode)",)
    FUNCTION = "sample"
    CATEGORY = "UniVG"
    DESCRIPTION = ("UniVG base model F_B with multi-condition guidance (w_T for text, w_I for the image): "
                   "text-to-video, image-to-video and text+image-to-video from pure noise.")
    SEARCH_ALIASES = ["text to video", "image to video", "t2v", "i2v", "video generation", "F_B"]

    def sample(self, model, positive, negative, seed, steps, text_weight, image_weight, frames, fps, sampler, width, height,
               ddim_final_step="original", guidance_from_t=0):
        require_finite(text_weight=text_weight, image_weight=image_weight)
        check_size(width, height)
        inner, device, per_call = load_to_device(model, branch_shape(frames, height, width),
                                                 guidance_branches(text_weight, image_weight))
        if inner.is_animation:
            raise ValueError("this is an animation model (first-frame concat): use UniVG Animation Sampler")
        denoise = guided_denoiser(inner, positive, negative, text_weight, image_weight, fps, device,
                                  guidance_from_t=guidance_from_t, branches_per_call=per_call)
        alphas_cumprod, scale_arr = inner.schedule_tensors()
        shape = (1, inner.latent_channels, frames, height // 8, width // 8)
        # drawn in the LATENT layout [frames, C, h, w], as core KSampler draws it: the same seed gives both the same noise
        noise = torch.randn((frames, *shape[1:2], *shape[3:]), generator=seeded_generator(seed)).transpose(0, 1)[None]
        with torch.no_grad():
            video = pipelines.generate(
                denoise, shape, alphas_cumprod, inner.config.prediction, steps=steps, sampler=sampler,
                spacing=inner.config.schedule.timestep_spacing, initial_noise=noise.to(device),
                scale_arr=scale_arr, callback=preview_progress(model, steps), final_step=ddim_final_step,
            )
        return (to_latent_output(video, inner),)


BGN_SAMPLING = (list(pipelines.BGN_SAMPLING), {
    "default": "plain",
    "tooltip": "plain: the sampler as published; consistent: every step lands on the Biased-Gaussian-Noise forward "
               "process the model was trained on (for UniVG F_A, F_SR and F_I; DDIM or DPM-Solver++; not for "
               "DynamiCrafter files, which were not trained with it)",
})
UPSCALER_BGN_SAMPLING = (["auto", *pipelines.BGN_SAMPLING], {
    "default": "auto",
    "tooltip": "auto: consistent for a model trained with Biased Gaussian Noise (a UniVG F_SR file), plain for "
               "others; plain: the sampler as published; consistent: every step lands on the BGN forward process "
               "the model was trained on",
})
LAST_FRAME = ("IMAGE", {"tooltip": "optional: the video's last frame, the same size as the first (interpolation "
                                    "between the two, for an interpolation model: UniVG Mini's "
                                    "univg_mini_interpolation, DynamiCrafter's dynamicrafter_512_interp_v1 at 16 frames, "
                                    "fs 5)"})
LOOP = ("BOOLEAN", {"default": False, "tooltip": "a looping video: the first frame is also the last keyframe, and the "
                                                 "repeated frame is dropped (frames - 1 come out); for an interpolation "
                                                 "model"})


def keyframe_mode(last_frame, loop: bool, frames: int, image) -> str:
    """first (animation), first_last (interpolation) or loop, from the optional inputs."""
    if last_frame is not None and loop:
        raise ValueError("give a last_frame or turn loop on, not both: a loop's last frame is its first")
    if last_frame is None and not loop:
        return "first"
    if frames < 3:
        raise ValueError(f"interpolation and loop need at least 3 frames, got {frames}")
    if last_frame is not None and tuple(last_frame.shape[1:3]) != tuple(image.shape[1:3]):
        raise ValueError(f"the last frame is {last_frame.shape[2]}x{last_frame.shape[1]}, the first "
                         f"{image.shape[2]}x{image.shape[1]}: give both the same size (an Image Scale node)")
    return "first_last" if last_frame is not None else "loop"


class UniVGAnimationSampler:
    """F_A: animate an image; the first frame's latent is concatenated on the channels and
    sampling starts from the Biased-Gaussian-Noise condition at t_n."""

    @classmethod
    def INPUT_TYPES(cls):
        inputs = _common_inputs(50)
        inputs["vae"] = ("VAE", {"tooltip": VAE_TOOLTIP})
        inputs["image"] = ("IMAGE", {"tooltip": "the first frame; width and height multiples of 64"})
        inputs["bgn_t_n"] = ("INT", {
            "default": -1, "min": -1, "max": 999,
            "tooltip": f"where sampling starts (BGN t_n: the first frame's forward process at this timestep); "
                       f"-1: the model's ({ANIMATION_WINDOW[1]} for UniVG F_A)",
        })
        return {"required": inputs, "optional": {"ddim_final_step": DDIM_FINAL_STEP, "guidance_from_t": GUIDANCE_FROM_T,
                                                 "last_frame": LAST_FRAME, "loop": LOOP, "bgn_sampling": BGN_SAMPLING}}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("the video's latents, one batch entry per frame; frame 0 is the input image's (and the last "
                       "frame the last_frame image's)",)
    FUNCTION = "sample"
    CATEGORY = "UniVG"
    DESCRIPTION = ("UniVG animation model F_A: the input image's latent is concatenated to every frame and "
                   "sampling starts from it (Biased Gaussian Noise); the output's first frame is the input image. "
                   "With a last frame (an interpolation model: UniVG F_I, DynamiCrafter 512 interp) it fills the frames "
                   "between two images, starting from their crossfade; with loop, a video that ends where it starts.")
    SEARCH_ALIASES = ["animate image", "image animation", "first frame", "DynamiCrafter", "F_A", "interpolation",
                      "first last frame", "keyframes", "loop", "F_I"]

    def sample(self, model, positive, negative, seed, steps, text_weight, image_weight, frames, fps, sampler, vae, image,
               bgn_t_n, ddim_final_step="original", guidance_from_t=0, last_frame=None, loop=False, bgn_sampling="plain",
               first_latent=None):
        """first_latent (callers in the pack): the first frame's VAE-space latent [1, C, h, w], used
        as it is instead of encoding `image` (which then only gives the size and the pixels kept)."""
        require_finite(text_weight=text_weight, image_weight=image_weight)
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        height, width = image.shape[1], image.shape[2]
        check_size(width, height)
        inner, device, per_call = load_to_device(model, branch_shape(frames, height, width),
                                                 guidance_branches(text_weight, image_weight))
        if not inner.is_animation:
            raise ValueError(
                f"this model takes {inner.in_channels} input channels; the animation sampler needs an animation "
                f"model ({2 * inner.latent_channels} channels: DynamiCrafter or UniVG F_A)"
            )
        config = inner.config
        mode = keyframe_mode(last_frame, loop, frames, image)
        t_n = bgn_t_n if bgn_t_n >= 0 else start_timestep(config, "animation" if mode == "first" else "interpolation")
        first = (to_model_latent(first_latent[-1:], inner, device) if first_latent is not None
                 else pixels_to_model_latent(vae, image[:1], inner).to(device))[:, :, 0]
        last = pixels_to_model_latent(vae, last_frame[:1], inner).to(device)[:, :, 0] if mode == "first_last" else None
        given = keyframes.keyframes_for(mode, first, frames, last=last)
        denoise = guided_denoiser(inner, positive, negative, text_weight, image_weight, fps, device,
                                  guidance_from_t=guidance_from_t, branches_per_call=per_call)
        alphas_cumprod, scale_arr = inner.schedule_tensors()
        with torch.no_grad():
            video = pipelines.animate_keyframes(
                denoise, given, "repeat" if mode == "first" else "sparse", alphas_cumprod, config.prediction,
                steps=steps, t_m=min(config.bgn_t_m or 0, t_n - 1), t_n=t_n, sampler=sampler,
                generator=seeded_generator(seed), scale_arr=scale_arr,
                callback=preview_progress(model, steps), final_step=ddim_final_step, bgn_sampling=bgn_sampling,
            )
        if mode == "loop":
            video = video[:, :, :-1]  # the last frame is the first again: the video repeats without a seam
        extra = {"univg_first_frame": image[:1].clone()}
        if mode == "first_last":
            extra["univg_last_frame"] = last_frame[:1].clone()
        return (to_latent_output(video, inner, **extra),)


class UniVGUpscaler:
    """F_SR: Biased-Gaussian-Noise super-resolution of a video (LATENT or IMAGE frames)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "a UniVG super-resolution model (F_SR) from the UniVG Checkpoint "
                                               "Loader"}),
                "vae": ("VAE", {"tooltip": VAE_TOOLTIP}),
                "positive": ("CONDITIONING", {"tooltip": "the video's caption (CLIP Text Encode)"}),
                "negative": ("CONDITIONING", {"tooltip": "the null text, usually an empty prompt"}),
                "seed": SEED,
                "width": ("INT", {"default": 1280, "min": 64, "max": 4096, "step": 64,
                                  "tooltip": "output width in pixels, a multiple of 64"}),
                "height": ("INT", {"default": 720, "min": 64, "max": 4096, "step": 64,
                                   "tooltip": "output height in pixels, a multiple of 64"}),
                "strength": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "where sampling starts: t_n = strength x 1000 (BGN); -1: the "
                                                  "model's t_n (700 / 1000 for a model without one)"}),
                "steps": ("INT", {"default": 7, "min": 1, "max": 1000,
                                  "tooltip": "DPM-Solver++ steps from t_n (the paper: 7 from t = 700)"}),
                "text_weight": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 30.0, "step": 0.1,
                                          "tooltip": "w_T: how strongly the detail follows the text"}),
                "fps": FPS_INPUT,
                "tile_frames": ("INT", {"default": 16, "min": 1, "max": 256, "tooltip": "frames per UNet call"}),
                "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64,
                                      "tooltip": "pixel width of a spatial tile of the UNet's calls (height: 5/8 of "
                                                 "it); frames wider or taller are also VAE-encoded in tiles this size"}),
            },
            "optional": {
                "latent": ("LATENT", {"tooltip": "low-resolution frames, e.g. from a UniVG sampler"}),
                "images": ("IMAGE", {"tooltip": "or low-resolution frames as images"}),
                "bgn_sampling": UPSCALER_BGN_SAMPLING,
            },
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("the upscaled video's latents, one batch entry per frame",)
    FUNCTION = "upscale"
    CATEGORY = "UniVG"
    DESCRIPTION = "UniVG super-resolution F_SR: upsample, then 7 DPM-Solver++ steps from t = 700 (BGN)."
    SEARCH_ALIASES = ["video upscale", "super resolution", "upscaler", "BGN", "F_SR"]

    def upscale(self, model, vae, positive, negative, seed, width, height, strength, steps, text_weight, fps,
                tile_frames, tile_size, latent=None, images=None, bgn_sampling="auto"):
        require_finite(strength=strength, text_weight=text_weight)
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        if latent is None and images is None:
            raise ValueError("connect the low-resolution frames: a LATENT (latent) or an IMAGE batch (images)")
        check_size(width, height)
        if strength < 0:
            strength = -1.0
        elif strength < 0.01:
            raise ValueError(f"strength must be -1 (the model's BGN t_n) or in [0.01, 1], got {strength}")
        if images is None:
            images = decode_latents(vae, latent["samples"])
        tile_w = tile_size // 8
        tile_h = max(8, (tile_w * 5 // 8) // 8 * 8)
        tile_shape = branch_shape(min(tile_frames, images.shape[0]), min(tile_h, height // 8) * 8,
                                  min(tile_w, width // 8) * 8)
        inner, device, per_call = load_to_device(model, tile_shape, guidance_branches(text_weight, 0.0))
        if inner.is_animation:
            raise ValueError("this is an animation model; the upscaler needs a text-only super-resolution model")
        if strength < 0:
            t_n = start_timestep(inner.config, "super_resolution")
            strength = t_n / inner.config.schedule.timesteps
        bgn_sampling = pipelines.super_resolution_sampling(bgn_sampling, inner.config.bgn_t_n is not None)
        denoise = guided_denoiser(inner, positive, negative, text_weight, 0.0, fps, device, use_image=False,
                                  branches_per_call=per_call)
        alphas_cumprod, _ = inner.schedule_tensors()
        with torch.no_grad():
            video = pipelines.super_resolve(
                denoise, model_space_encoder(vae, inner, device, tile=tile_size), None, images[..., :3].movedim(-1, 1) * 2 - 1,
                alphas_cumprod, inner.config.prediction, height=height, width=width, vae_chunk=4,
                before_each_chunk=check_interrupt, strength=strength, steps=steps, generator=seeded_generator(seed),
                tile=(tile_frames, tile_h, tile_w), overlap=(min(4, tile_frames // 4), min(8, tile_h // 4)),
                callback=preview_progress(model, steps), bgn_sampling=bgn_sampling, t_m=inner.config.bgn_t_m or 0,
            )
        return (to_latent_output(video, inner),)
