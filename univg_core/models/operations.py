"""The layer classes a model is built from: torch.nn's by default, or a host's.

A host that manages memory (ComfyUI's `comfy.ops`) hands its own Linear, Conv and Norm classes:
subclasses of torch.nn's that cast or move their weights at call time, so a model built from them
can be partially loaded, offloaded or stored in a low-precision dtype. The core never imports
such a host; it only builds every weight-holding layer from the namespace it is given.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYER_NAMES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "GroupNorm", "LayerNorm")

TORCH_OPERATIONS = SimpleNamespace(**{name: getattr(nn, name) for name in LAYER_NAMES})


def check_operations(operations: Any) -> Any:
    """The namespace itself, or a clear error naming the layer classes it lacks."""
    missing = [name for name in LAYER_NAMES if not isinstance(getattr(operations, name, None), type)]
    if missing:
        raise TypeError(f"an operations namespace needs the layer classes {list(LAYER_NAMES)}; "
                        f"{operations!r} lacks {missing}")
    for name in LAYER_NAMES:
        if not issubclass(getattr(operations, name), getattr(nn, name)):
            raise TypeError(f"operations.{name} must subclass torch.nn.{name}, got {getattr(operations, name)!r}")
    return operations


def casts_at_call_time(module: nn.Module) -> bool:
    """Whether the layer's own forward casts or moves its weights (a host's layer, e.g. ComfyUI's
    `comfy_cast_weights` convention, or weights patched at call time) rather than using them as stored."""
    return bool(getattr(module, "comfy_cast_weights", False) or getattr(module, "weight_function", None)
                or getattr(module, "bias_function", None))


class _Float32GroupNorm:
    """GroupNorm computed in float32 whatever the input's and the weights' dtype, as the lvdm
    originals do: fp16 activations overflow the variance otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if casts_at_call_time(self) or self.weight is None or self.weight.dtype == torch.float32:
            return super().forward(x.float()).to(x.dtype)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(),
                            None if self.bias is None else self.bias.float(), self.eps).to(x.dtype)


@functools.lru_cache(maxsize=None)
def float32_group_norm_class(group_norm: type) -> type:
    """`group_norm` (torch.nn.GroupNorm or a host's subclass of it) computing in float32."""
    return type(f"Float32{group_norm.__name__}", (_Float32GroupNorm, group_norm), {})


def float32_group_norm(operations: Any, groups: int, channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    return float32_group_norm_class(operations.GroupNorm)(groups, channels, eps=eps)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The Linear/Conv/Norm layers of `model` (what an operations namespace builds)."""
    layer_types = tuple(getattr(nn, name) for name in LAYER_NAMES)
    return [module for module in model.modules() if isinstance(module, layer_types)]


def store_layer_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the weights of every Linear/Conv/Norm layer of `model` as `dtype` (e.g. fp8: layers
    that cast at call time compute in the model's compute dtype); other parameters (learned
    queries, position tables, gates) keep theirs. Returns the number of tensors converted."""
    converted = 0
    for module in weight_layers(model):
        for name, parameter in module.named_parameters(recurse=False):
            module._parameters[name] = nn.Parameter(parameter.data.to(dtype), requires_grad=False)
            converted += 1
    return converted


def cpu_computes_bf16_natively() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX, as oneDNN reports it); without it
    PyTorch emulates bf16 on the CPU, which saves memory but may run slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False

