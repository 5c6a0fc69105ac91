"""Nodes that put UniVG models under ComfyUI's own samplers: the multi-condition guider
(GUIDER, for SamplerCustomAdvanced), the first-frame concat conditioning of the animation
model and the Biased-Gaussian-Noise sigmas (SIGMAS) that start sampling at t_n."""

from __future__ import annotations

import torch

import comfy.samplers

from ..univg_core.configs import start_timestep
from ..univg_core.diffusion.guidance import multi_condition, require_finite, rescale, single_branch, weights_at
from ..univg_core.diffusion.samplers import make_timesteps
from ..univg_core.diffusion import keyframes
from .conditioning import CONCAT_LATENT, IMAGE_TOKENS, KEYFRAME_CONCAT, NULL_IMAGE_TOKENS, first_entry, with_extras
from .latents import encode_images
from .model import univg_model
from .samplers import GUIDANCE_FROM_T, MODEL_TOOLTIP, check_size


def guidance_branches(positive, negative) -> dict:
    """UniVG's three conditions from a positive that UniVG Multi-Conditioning made (text +
    image tokens + null image tokens) and a negative (the null text): F(0) = (negative text,
    null image), F(T) = (positive text, null image), F(I) = (negative text, image). Other
    keys (the first-frame concat, fps) are kept in every branch."""
    _, extras = first_entry(positive, "positive")
    first_entry(negative, "negative")
    shared = {key: value for key, value in extras.items() if key not in (IMAGE_TOKENS, NULL_IMAGE_TOKENS)}
    image, null = extras.get(IMAGE_TOKENS), extras.get(NULL_IMAGE_TOKENS)
    if image is None:
        return {"null": with_extras(negative, shared), "text": positive}
    null_image = {IMAGE_TOKENS: null, NULL_IMAGE_TOKENS: null}
    return {
        "null": with_extras(negative, {**shared, **null_image}),
        "text": with_extras(positive, null_image),
        "image": with_extras(negative, {**shared, IMAGE_TOKENS: image, NULL_IMAGE_TOKENS: null}),
    }


class MultiConditionGuider(comfy.samplers.CFGGuider):
    """V = F(0) + w_T (F(T) - F(0)) + w_I (F(I) - F(0)), the branches in one batched model
    call (ComfyUI's calc_cond_batch), optionally rescaled to the text branch's std (in the
    model's own eps / v parameterisation, as DynamiCrafter rescales)."""

    def set_weights(self, w_text: float, w_image: float, guidance_rescale: float, guidance_from_t: int = 0) -> None:
        self.w_text, self.w_image, self.guidance_rescale = w_text, w_image, guidance_rescale
        self.guidance_from_t = guidance_from_t  # below this timestep every nonzero weight is 1

    def set_conds(self, positive, negative):
        self.inner_set_conds(guidance_branches(positive, negative))

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        w_text, w_image = self.w_text, self.w_image
        if "image" not in self.conds:
            w_image = 0.0
        if self.guidance_from_t:
            t = float(self.inner_model.model_sampling.timestep(timestep).reshape(-1)[0])
            w_text, w_image = weights_at(t, w_text, w_image, self.guidance_from_t)
        only = single_branch("multi", w_text, w_image)
        if only is not None:  # the guided output is this branch (its own rescale reference): one model call
            return comfy.samplers.calc_cond_batch(self.inner_model, [self.conds[only]], x, timestep, model_options)[0]
        weights = {"text": w_text, "image": w_image}
        names = ["null"] + [name for name in ("text", "image") if weights[name]]  # 0: not run
        outputs = dict(zip(names, comfy.samplers.calc_cond_batch(
            self.inner_model, [self.conds[name] for name in names], x, timestep, model_options)))
        guided = multi_condition(outputs["null"], outputs.get("text"), outputs.get("image"),
                                 w_text if "text" in outputs else 0.0, w_image if "image" in outputs else 0.0)
        if not self.guidance_rescale:
            return guided
        sampling = self.inner_model.model_sampling
        as_output = lambda denoised: sampling.output_from_denoised(timestep, denoised, x)  # noqa: E731
        reference = outputs.get("text", outputs.get("image", outputs["null"]))
        # the batch is the video's frames: the std is the whole video's, as the UniVG samplers take it
        guided_output = as_output(guided)
        rescaled = rescale(guided_output.reshape(1, -1), as_output(reference).reshape(1, -1), self.guidance_rescale)
        return sampling.calculate_denoised(timestep, rescaled.reshape(guided_output.shape), x)


class UniVGMultiConditionGuider:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": MODEL_TOOLTIP}),
                "positive": ("CONDITIONING", {"tooltip": "from UniVG Multi-Conditioning (text, and the image's tokens "
                                                         "with the null image's)"}),
                "negative": ("CONDITIONING", {"tooltip": "the null text, usually an empty prompt"}),
                "text_weight": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 30.0, "step": 0.1,
                                          "tooltip": "w_T: how strongly the video follows the text"}),
                "image_weight": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                           "tooltip": "w_I: how strongly the video follows the image tokens (no "
                                                      "effect without an image)"}),
                "guidance_rescale": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.05,
                                               "tooltip": "rescale the guided output to the text branch's std "
                                                          "(DynamiCrafter: 0.7); -1: the model's value"}),
            },
            "optional": {"guidance_from_t": GUIDANCE_FROM_T},
        }

    RETURN_TYPES = ("GUIDER",)
    OUTPUT_TOOLTIPS = ("UniVG's multi-condition guidance, for SamplerCustomAdvanced",)
    FUNCTION = "get_guider"
    CATEGORY = "UniVG"
    DESCRIPTION = ("UniVG's multi-condition guidance for SamplerCustomAdvanced: V = F(0) + w_T (F(T) - F(0)) + "
                   "w_I (F(I) - F(0)), the three branches in one batched model call; any core sampler and "
                   "sigmas drive it.")
    SEARCH_ALIASES = ["multi-condition guidance", "text and image guidance", "guider", "cfg", "UniVG guider"]

    def get_guider(self, model, positive, negative, text_weight, image_weight, guidance_rescale, guidance_from_t=0):
        require_finite(text_weight=text_weight, image_weight=image_weight, guidance_rescale=guidance_rescale)
        inner = univg_model(model)
        if guidance_rescale < 0:
            guidance_rescale = inner.config.guidance_rescale
        guider = MultiConditionGuider(model)
        guider.set_conds(positive, negative)
        guider.set_weights(text_weight, image_weight, guidance_rescale, guidance_from_t)
        return (guider,)


POSITIVE = ("CONDITIONING", {"tooltip": "the positive (from UniVG Multi-Conditioning or CLIP Text Encode)"})
NEGATIVE = ("CONDITIONING", {"tooltip": "the negative (the null text; UniVG Multi-Conditioning's negative output for "
                                        "image models)"})


class UniVGFirstFrameConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "positive": POSITIVE,
                "negative": NEGATIVE,
                "vae": ("VAE", {"tooltip": "the VAE that encodes the first frame (the loader's)"}),
                "image": ("IMAGE", {"tooltip": "the first frame; width and height multiples of 64"}),
                "frames": ("INT", {"default": 16, "min": 1, "max": 256, "tooltip": "frames of the video"}),
            }
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    OUTPUT_TOOLTIPS = (
        "the positive with the first frame's latent attached (concatenated to every frame's input)",
        "the negative with the same first frame (the unconditional branch keeps the concat)",
        "the first frame's latent repeated over the frames: sampling from it with noise at t_n is the BGN "
        "condition q(v_tn | v_C) (UniVG BGN Sigmas, or KSampler's denoise = t_n / 1000); its noise mask keeps "
        "frame 0 on the image at every step",
    )
    FUNCTION = "condition"
    CATEGORY = "UniVG"
    DESCRIPTION = ("First-frame concat for the animation model (F_A, DynamiCrafter) under core samplers: the image's "
                   "latent goes into both conditionings, and the latent to start from is the image repeated "
                   "(Biased Gaussian Noise).")
    SEARCH_ALIASES = ["image to video", "animate image", "first frame", "concat latent", "BGN start"]

    def condition(self, positive, negative, vae, image, frames):
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        check_size(image.shape[2], image.shape[1])
        first = encode_images(vae, image[:1])
        concat = {CONCAT_LATENT: first}
        start = first.repeat(frames, 1, 1, 1)
        # frame 0 held at the first frame's forward process every step (core's inpainting mask),
        # as the UniVG Animation Sampler pins it: the video starts on the image
        keep_first = torch.ones(frames, 1, *first.shape[-2:])
        keep_first[0] = 0
        return with_extras(positive, concat), with_extras(negative, concat), {"samples": start, "noise_mask": keep_first}


def keyframe_positions(text: str, count: int, frames: int) -> tuple[int, ...]:
    """'0, -1' -> (0, frames - 1): one frame index per keyframe image, negative from the end."""
    try:
        given = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"positions must be comma-separated frame numbers such as '0, -1', got {text!r}") from None
    if len(given) != count:
        raise ValueError(f"{count} keyframe image(s) but {len(given)} position(s) in {text!r}: give one position "
                         "per image (for a loop, the same image twice at '0, -1')")
    positions = tuple(index + frames if index < 0 else index for index in given)
    if any(not 0 <= index < frames for index in positions) or list(positions) != sorted(set(positions)):
        raise ValueError(f"positions {text!r} must be distinct frames in increasing order within the {frames} "
                         f"frames (0 to {frames - 1}, or -1 for the last)")
    return positions


class UniVGKeyframeConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "positive": POSITIVE,
                "negative": NEGATIVE,
                "vae": ("VAE", {"tooltip": "the VAE that encodes the keyframes (the loader's)"}),
                "images": ("IMAGE", {"tooltip": "the keyframes as an image batch, in the order of their positions "
                                                "(Image Batch joins two); width and height multiples of 64"}),
                "positions": ("STRING", {"default": "0, -1", "tooltip": "the frame of each keyframe image, "
                                                                        "comma-separated; -1 is the last frame"}),
                "frames": ("INT", {"default": 16, "min": 2, "max": 256, "tooltip": "frames of the video"}),
            }
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    OUTPUT_TOOLTIPS = (
        "the positive with the keyframes attached (their latents at their frames, zeros between, concatenated to the "
        "model's input)",
        "the negative with the same keyframes (the unconditional branch keeps the concat)",
        "the keyframes' crossfade, frame by frame: sampling from it with noise at t_n is the BGN condition (UniVG "
        "BGN Sigmas); its noise mask holds every keyframe's frame on its image",
    )
    FUNCTION = "condition"
    CATEGORY = "UniVG"
    DESCRIPTION = ("Keyframe concat for interpolation models (UniVG F_I, DynamiCrafter 512 interp) under core "
                   "samplers: the keyframes' latents at their frames go into both conditionings, and the latent to "
                   "start from is their per-frame blend (Biased Gaussian Noise). First + last frame interpolates; the "
                   "same image at both ends loops (drop the last frame after decoding).")
    SEARCH_ALIASES = ["interpolation", "first last frame", "keyframes", "loop", "frame interpolation", "F_I"]

    def condition(self, positive, negative, vae, images, positions, frames):
        if vae is None:
            raise ValueError("no VAE connected: the checkpoint has none; add a Load VAE node")
        check_size(images.shape[2], images.shape[1])
        where = keyframe_positions(positions, images.shape[0], frames)
        latents = encode_images(vae, images)  # [K, C, h, w], VAE space
        given = keyframes.Keyframes(latents.transpose(0, 1)[None], where, frames)
        concat = keyframes.concat_latent(given, "sparse")[0].transpose(0, 1).contiguous()
        start = keyframes.blend(given)[0].transpose(0, 1).contiguous()
        hold = torch.ones(frames, 1, *latents.shape[-2:])
        hold[list(where)] = 0
        extras = {KEYFRAME_CONCAT: concat}
        return with_extras(positive, extras), with_extras(negative, extras), {"samples": start, "noise_mask": hold}


def bgn_sigmas(model_sampling, steps: int, t_n: int) -> torch.Tensor:
    """sigma' at the trailing timesteps from t_n (the UniVG samplers' own), then 0."""
    timesteps = make_timesteps(steps, "uniform_trailing", t_start=t_n, timesteps=len(model_sampling.sigmas))
    sigmas = model_sampling.sigmas.float().cpu()[timesteps]
    return torch.cat([sigmas, sigmas.new_zeros(1)])


class UniVGBGNSigmas:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": MODEL_TOOLTIP}),
                "steps": ("INT", {"default": 50, "min": 1, "max": 1000, "tooltip": "denoising steps from t_n"}),
                "t_n": ("INT", {"default": -1, "min": -1, "max": 999,
                                "tooltip": "the BGN start timestep; -1: the model's (its file's t_n; else 990 for an "
                                           "animation model, 999 for a base model)"}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("sigmas from t_n to 0 for SamplerCustom / SamplerCustomAdvanced",)
    FUNCTION = "get_sigmas"
    CATEGORY = "UniVG"
    DESCRIPTION = ("The sigmas of Biased Gaussian Noise: sampling starts at t_n from the latent it is given (the "
                   "first frame for F_A, the upsampled video for F_SR), on the UniVG samplers' trailing timesteps.")
    SEARCH_ALIASES = ["BGN", "biased gaussian noise", "start step", "sigmas", "t_n"]

    def get_sigmas(self, model, steps, t_n):
        inner = univg_model(model)
        if t_n < 0:
            t_n = start_timestep(inner.config)
        if steps > t_n + 1:
            raise ValueError(f"UniVG BGN Sigmas: at most {t_n + 1} steps start at t_n = {t_n}, got {steps}")
        return (bgn_sigmas(model.get_model_object("model_sampling"), steps, t_n),)

