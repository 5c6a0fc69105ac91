"""The UniVG MODEL as a native ComfyUI model: a comfy.model_base.BaseModel around the
UniVGModel, so core KSampler, SamplerCustom(Advanced), every core sampler and scheduler and
model-patching nodes work on it, as they do on core's own video models.

Frames travel as the LATENT batch (one entry per frame, SVD's convention); the model
regroups them into videos with the frame count that extra_conds records. Image tokens,
the first-frame concat latent and fps come from the conditioning (UniVG Multi-Conditioning,
UniVG First-Frame Conditioning)."""

from __future__ import annotations

import logging
import math

import torch

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_sampling
import comfy.supported_models_base

from ..univg_core.configs import ModelConfig
from ..univg_core.diffusion import sigma_space
from ..univg_core.diffusion.schedule import alphas_cumprod_for, scale_arr_for
from ..univg_core.models.memory import planned_activation_bytes
from .conditioning import CONCAT_LATENT, FPS, IMAGE_TOKENS, KEYFRAME_CONCAT
from .previews import latent_rgb_for

FRAMES = "univg_frames"
log = logging.getLogger("univg")


class UniVGLatentFormat(comfy.latent_formats.LatentFormat):
    """The VAE's latent scale and RGB preview factors of one UniVG model."""

    def __init__(self, config: ModelConfig):
        self.scale_factor = config.schedule.scale_factor
        self.latent_channels = config.unet.out_channels
        self.latent_rgb_factors, self.latent_rgb_factors_bias = latent_rgb_for(config)


class UniVGModelSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    """model_sampling for ComfyUI's samplers over sigma' = sigma / scale_arr (see
    univg_core.diffusion.sigma_space): the checkpoint's schedule (linear betas, zero terminal
    SNR where it has it) and prediction type. ComfyUI's discrete-schedule lookups (timestep,
    sigma, percent_to_sigma) and EPS's noise scaling (x = latent + sigma' noise) are kept."""

    def __init__(self, config: ModelConfig):
        torch.nn.Module.__init__(self)
        schedule = config.schedule
        alphas_cumprod = alphas_cumprod_for(schedule)
        scale_arr = scale_arr_for(schedule) if schedule.scale_base is not None else None
        self.prediction = config.prediction
        self.num_timesteps = schedule.timesteps
        self.linear_start, self.linear_end = schedule.linear_start, schedule.linear_end
        self.zsnr = schedule.zero_terminal_snr
        self.sigma_data = 1.0
        self.set_sigmas(sigma_space.sigma_table(alphas_cumprod, scale_arr))
        self.has_scale_arr = scale_arr is not None
        scales = scale_arr if scale_arr is not None else torch.ones(schedule.timesteps, dtype=torch.float64)
        self.register_buffer("scales", scales.float())

    def _scale(self, sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """s_t at each sigma's timestep, shaped like sigma for `like` (1 without scale_arr: no lookup)."""
        if not self.has_scale_arr:
            return torch.ones((), device=like.device, dtype=like.dtype)
        scale = self.scales.to(sigma.device)[self.timestep(sigma).long()]
        return comfy.model_sampling.reshape_sigma(scale, like.ndim).to(like.dtype)

    def calculate_input(self, sigma, noise):
        s = comfy.model_sampling.reshape_sigma(sigma, noise.ndim)
        return sigma_space.network_input(noise, s, self._scale(sigma, noise))

    def calculate_denoised(self, sigma, model_output, model_input):
        s = comfy.model_sampling.reshape_sigma(sigma, model_output.ndim)
        return sigma_space.clean_from_output(model_output, model_input, s, self._scale(sigma, model_output),
                                             self.prediction)

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        """latent + sigma' noise; from the top of the schedule, pure noise in the network's
        input (lvdm's x_T ~ N(0, I)): sigma' there stands for sqrt(1 + sigma^2) / s."""
        s = comfy.model_sampling.reshape_sigma(sigma, noise.ndim)
        if max_denoise:
            scale = self._scale(sigma, noise)
            return noise * (1 + (s * scale) ** 2).sqrt() / scale + latent_image
        return noise * s + latent_image

    def output_from_denoised(self, sigma, denoised, model_input):
        """The network output (eps or v) that gives `denoised`: for guidance rescale."""
        s = comfy.model_sampling.reshape_sigma(sigma, denoised.ndim)
        return sigma_space.output_from_clean(denoised, model_input, s, self._scale(sigma, denoised), self.prediction)


class _ComfyConfig(comfy.supported_models_base.BASE):
    unet_config = {}
    unet_extra_config = {}
    latent_format = comfy.latent_formats.LatentFormat


class UniVGNativeModel(comfy.model_base.BaseModel):
    """What a UniVG MODEL wire holds: `diffusion_model` is the UniVGModel (UNet3D +
    Resampler), `model_sampling` the checkpoint's schedule."""

    def __init__(self, univg, device=None, manual_cast_dtype=None):
        comfy_config = _ComfyConfig({"disable_unet_model_creation": True})
        comfy_config.latent_format = UniVGLatentFormat(univg.config)
        comfy_config.manual_cast_dtype = manual_cast_dtype
        model_type = comfy.model_base.ModelType.V_PREDICTION if univg.config.prediction == "v" else comfy.model_base.ModelType.EPS
        super().__init__(comfy_config, model_type, device=device)
        self.diffusion_model = univg
        self.model_sampling = UniVGModelSampling(univg.config)

    def memory_required(self, input_shape, cond_shapes={}):
        """Bytes of activations one UNet call on `input_shape` [frames x videos x guidance
        branches, C, h, w] needs: the model's peak on the meta device with a margin
        (univg_core/models/memory.py), its frames grouped into videos of the model's length (a
        partial video rounds up)."""
        univg = self.diffusion_model
        config = univg.config.unet
        batch, height, width = int(input_shape[0]), int(input_shape[-2]), int(input_shape[-1])
        frames = max(1, min(batch, config.temporal_length or 16))
        image_tokens = univg.image_proj.config.total_queries if univg.has_image_branch else None
        try:
            return planned_activation_bytes(config, math.ceil(batch / frames), frames, height, width,
                                            univg.compute_dtype, image_tokens=image_tokens)
        except Exception as error:  # the meta-device pass leans on PyTorch's dispatch internals
            log.warning("UniVG: memory planning on the meta device failed (%s: %s); using ComfyUI's estimate",
                        type(error).__name__, error)
            return super().memory_required(input_shape, cond_shapes)

    def extra_conds(self, **kwargs):
        univg = self.diffusion_model
        noise = kwargs["noise"]
        out = {}
        text = kwargs.get("cross_attn")
        if text is not None:
            out["c_crossattn"] = comfy.conds.CONDCrossAttn(text)
        tokens = kwargs.get(IMAGE_TOKENS)
        if tokens is not None and univg.has_image_branch:
            out[IMAGE_TOKENS] = comfy.conds.CONDRegular(tokens[:1])
        sparse = kwargs.get(KEYFRAME_CONCAT)
        if univg.is_animation and sparse is not None:
            if sparse.shape[0] != noise.shape[0] or sparse.shape[-2:] != noise.shape[-2:]:
                raise ValueError(
                    f"UniVG Keyframe Conditioning made {sparse.shape[0]} frames of {sparse.shape[-1] * 8}x"
                    f"{sparse.shape[-2] * 8}, the latent to sample has {noise.shape[0]} of {noise.shape[-1] * 8}x"
                    f"{noise.shape[-2] * 8}: sample its latent output"
                )
            out["c_concat"] = comfy.conds.CONDNoiseShape(self.process_latent_in(sparse.to(noise.device, noise.dtype)))
        elif univg.is_animation:
            first = kwargs.get(CONCAT_LATENT)
            if first is None:
                raise ValueError(
                    "this is an animation model (first-frame concat): route its positive and negative through "
                    "'UniVG First-Frame Conditioning' or 'UniVG Keyframe Conditioning' (or use the UniVG Animation Sampler)"
                )
            first = self.process_latent_in(first[:1].to(noise.device, noise.dtype))
            if first.shape[-2:] != noise.shape[-2:]:
                raise ValueError(
                    f"the first frame's latent is {first.shape[-1] * 8}x{first.shape[-2] * 8}, the video "
                    f"{noise.shape[-1] * 8}x{noise.shape[-2] * 8}: give UniVG First-Frame Conditioning the video's size"
                )
            out["c_concat"] = comfy.conds.CONDNoiseShape(first.expand(noise.shape[0], -1, -1, -1).contiguous())
        out[FRAMES] = comfy.conds.CONDConstant(int(noise.shape[0]))
        out[FPS] = comfy.conds.CONDConstant(int(kwargs.get(FPS) or univg.config.unet.default_fs))
        return out
