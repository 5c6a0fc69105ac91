"""The MODEL a UniVG loader returns: the UNet3D and its image Resampler in one module (the
diffusion_model of a native ComfyUI model, nodes/native.py), inside a ComfyUI ModelPatcher so
ComfyUI's memory manager loads and offloads it."""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn as nn

import comfy.model_management
import comfy.model_patcher
import comfy.ops

from ..univg_core.checkpoints import LoadedCheckpoint
from ..univg_core.configs import ModelConfig
from ..univg_core.diffusion.schedule import alphas_cumprod_for, scale_arr_for
from ..univg_core.models.memory import branches_that_fit
from ..univg_core.models.operations import cpu_computes_bf16_natively, store_layer_weights, weight_layers
from .native import UniVGNativeModel

log = logging.getLogger(__name__)

DTYPE_CHOICES = ["auto", "fp32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2"]
FP8_DTYPES = {"fp8_e4m3fn": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}


class UniVGModel(nn.Module):
    """What travels on a MODEL wire: weights plus everything a sampler needs to know."""

    def __init__(self, loaded: LoadedCheckpoint):
        super().__init__()
        self.unet = loaded.unet
        self.image_proj = loaded.image_proj
        self.config: ModelConfig = loaded.config
        self.source = loaded.path

    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels

    @property
    def has_image_branch(self) -> bool:
        return self.unet.config.image_cross_attention and self.image_proj is not None

    @property
    def is_animation(self) -> bool:
        return self.in_channels == 2 * self.latent_channels

    @property
    def dtype(self) -> torch.dtype:
        """The dtype its weights are stored in (ComfyUI's get_dtype)."""
        return self.unet.out[2].weight.dtype

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.unet.dtype

    def compute_in(self, dtype: torch.dtype) -> None:
        for part in (self.unet, self.image_proj):
            if part is not None:
                part.compute_dtype = dtype

    def forward(self, x, timesteps, context=None, control=None, transformer_options={}, univg_frames=None,
                univg_fps=None, univg_image_tokens=None, **unused):
        """ComfyUI's call: frames as the batch ([videos * frames, C, h, w], text and image tokens
        repeated per frame) -> the UNet's output in the same layout."""
        frames = int(univg_frames or x.shape[0])
        if x.shape[0] % frames:
            raise ValueError(f"a batch of {x.shape[0]} latents is not whole videos of {frames} frames")
        videos = x.shape[0] // frames

        def per_video(tensor):
            return tensor.reshape(videos, frames, *tensor.shape[1:])[:, 0]

        video = x.reshape(videos, frames, *x.shape[1:]).transpose(1, 2)
        image = None
        if univg_image_tokens is not None and self.has_image_branch:
            image = self.image_proj(per_video(univg_image_tokens).to(self.compute_dtype))
        out = self.unet(video, per_video(timesteps), context=per_video(context), image_context=image, fs=univg_fps)
        return out.transpose(1, 2).reshape(x.shape[0], -1, *x.shape[-2:])

    def schedule_tensors(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(alphas_cumprod, scale_arr or None), float64 on the CPU."""
        schedule = self.config.schedule
        return alphas_cumprod_for(schedule), scale_arr_for(schedule) if schedule.scale_base is not None else None


def choose_dtype(choice: str, device: torch.device) -> torch.dtype:
    """The dtype a UniVG model computes in on `device` for a loader's dtype choice."""
    if choice == "fp32":
        return torch.float32
    if choice == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log.warning("UniVG: this GPU does not compute in bf16; using fp16 instead")
        return torch.float16
    if choice == "fp16":
        return torch.float16
    if choice == "bf16":
        if device.type == "cpu" and not cpu_computes_bf16_natively():
            log.warning("UniVG: this CPU has no bf16 arithmetic (AVX512-BF16 or AMX): bf16 is emulated, half the "
                        "memory of fp32 but possibly slower; choose fp32 for speed")
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def choose_dtypes(choice: str, device: torch.device) -> tuple[torch.dtype, torch.dtype]:
    """(weight dtype, compute dtype) for a loader's dtype choice: fp8 choices store the weights
    in fp8 and compute in what `auto` picks (each layer casts its weights when called)."""
    if choice not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {DTYPE_CHOICES}, got {choice!r}")
    if choice in FP8_DTYPES:
        weight = getattr(torch, FP8_DTYPES[choice], None)
        if weight is None:
            raise ValueError(f"this PyTorch ({torch.__version__}) has no {FP8_DTYPES[choice]}: choose fp16, bf16 "
                             "or fp32 for the UniVG model's weights")
        return weight, choose_dtype("auto", device)
    compute = choose_dtype(choice, device)
    return compute, compute


def host_operations(dtype_choice: str):
    """ComfyUI's layer classes for a model of this dtype choice (comfy.ops): layers that its
    memory manager can partially load and offload, and that cast stored weights when called."""
    device = comfy.model_management.get_torch_device()
    weight, compute = choose_dtypes(dtype_choice, device)
    return comfy.ops.pick_operations(weight, compute if compute != weight else None, load_device=device)


def wrap_in_patcher(loaded: LoadedCheckpoint, dtype_choice: str) -> comfy.model_patcher.ModelPatcher:
    load_device = comfy.model_management.get_torch_device()
    offload_device = comfy.model_management.unet_offload_device()
    weight, compute = choose_dtypes(dtype_choice, load_device)
    univg = UniVGModel(loaded).to(device=offload_device, dtype=compute).eval()
    if weight != compute:
        if not all(hasattr(layer, "comfy_cast_weights") for layer in weight_layers(univg)):
            raise ValueError(f"dtype {dtype_choice}: weights stored as {weight} need a model built from ComfyUI's "
                             "operations (the UniVG Checkpoint Loader builds it so)")
        store_layer_weights(univg, weight)
        univg.compute_in(compute)
    model = UniVGNativeModel(univg, device=offload_device, manual_cast_dtype=compute if weight != compute else None)
    size = comfy.model_management.module_size(model)
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device, size=size)


def univg_model(model) -> UniVGModel:
    """The UniVGModel inside a MODEL input, or a clear error for another pack's MODEL."""
    inner = getattr(getattr(model, "model", None), "diffusion_model", None)
    if not isinstance(inner, UniVGModel):
        raise ValueError(
            "this MODEL is not a UniVG model: load it with 'UniVG Checkpoint Loader' (a VideoCrafter, "
            "DynamiCrafter or UniVG video checkpoint); image models from 'Load Checkpoint' do not work here"
        )
    return inner


def load_to_device(patcher, branch_shape: Optional[tuple[int, ...]] = None,
                   branches: int = 1) -> tuple[UniVGModel, torch.device, int]:
    """Ask ComfyUI's memory manager to put the model on its device (it may offload others, or load
    this one partially), leaving room for UNet calls on `branch_shape` [videos x frames, C, h, w]:
    for all `branches` of guidance batched if it can make that room, for one at the least. Returns
    the model, its device and how many branches one call batches in the memory left."""
    inner = univg_model(patcher)
    if branch_shape is None:
        comfy.model_management.load_models_gpu([patcher])
        return inner, patcher.load_device, branches
    one = patcher.model.memory_required(list(branch_shape))
    batched = patcher.model.memory_required([branches * branch_shape[0], *branch_shape[1:]])
    comfy.model_management.load_models_gpu([patcher], memory_required=batched, minimum_memory_required=one)
    free = comfy.model_management.get_free_memory(patcher.load_device)
    per_call = branches_that_fit(free, one, branches)
    if per_call < branches:
        log.info("UniVG: %.2f GiB free, %.2f GiB per guidance branch: %d of the %d branches per UNet call",
                 free / 2**30, one / 2**30, per_call, branches)
    return inner, patcher.load_device, per_call
