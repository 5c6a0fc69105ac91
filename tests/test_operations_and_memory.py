"""The UNet built from an operations namespace (a host's casting layers), and the activation
memory of a UNet call found on the meta device against the CPU allocator's measured peak."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import randomize_, relative_error, tiny_config, tiny_inputs
from univg_core.models.memory import activation_peak_bytes, measured_cpu_peak_bytes, planned_activation_bytes
from univg_core.models.operations import (LAYER_NAMES, TORCH_OPERATIONS, check_operations, store_layer_weights,
                                          weight_layers)
from univg_core.models.unet3d import UNet3D


def counting_operations():
    """torch.nn's layers, each recording that its own forward ran."""
    called: set[int] = set()

    def counted(base: type) -> type:
        def forward(self, *args, **kwargs):
            called.add(id(self))
            return base.forward(self, *args, **kwargs)

        return type(f"Counted{base.__name__}", (base,), {"forward": forward})

    return SimpleNamespace(**{name: counted(getattr(nn, name)) for name in LAYER_NAMES}), called


def casting_operations():
    """Layers that keep their stored weights and cast them to the input's dtype when called, as
    a memory-managing host's do (they say so with the `comfy_cast_weights` flag)."""

    def cast(weight, x):
        return None if weight is None else weight.to(x.dtype)

    def casting(base: type, call) -> type:
        return type(f"Casting{base.__name__}", (base,), {"comfy_cast_weights": True,
                                                        "forward": lambda self, x: call(self, x)})

    return SimpleNamespace(
        Linear=casting(nn.Linear, lambda m, x: F.linear(x, cast(m.weight, x), cast(m.bias, x))),
        Conv1d=casting(nn.Conv1d, lambda m, x: m._conv_forward(x, cast(m.weight, x), cast(m.bias, x))),
        Conv2d=casting(nn.Conv2d, lambda m, x: m._conv_forward(x, cast(m.weight, x), cast(m.bias, x))),
        Conv3d=casting(nn.Conv3d, lambda m, x: m._conv_forward(x, cast(m.weight, x), cast(m.bias, x))),
        GroupNorm=casting(nn.GroupNorm, lambda m, x: F.group_norm(x, m.num_groups, cast(m.weight, x),
                                                                  cast(m.bias, x), m.eps)),
        LayerNorm=casting(nn.LayerNorm, lambda m, x: F.layer_norm(x, m.normalized_shape, cast(m.weight, x),
                                                                  cast(m.bias, x), m.eps)),
    )


def run(unet: UNet3D, config, seed: int = 0) -> torch.Tensor:
    x, t, context, _ = tiny_inputs(config, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    image = None
    if config.unet.image_cross_attention:
        image = torch.randn(x.shape[0], 4, config.unet.context_dim, generator=generator)
    with torch.no_grad():
        return unet(x, t, context=context, image_context=image, fs=3)


@pytest.mark.parametrize("family", ["videocrafter2_t2v_512", "dynamicrafter_512"])
def test_every_weight_layer_is_built_from_the_namespace_and_runs_its_own_forward(family):
    """Every Linear/Conv/Norm is the namespace's class and is called as a module (a host's layer
    casts or fetches its weights there), the 1x1-conv projections included, and the output is
    torch.nn's for the same weights."""
    config = tiny_config(family)
    reference = randomize_(UNet3D(config.unet)).eval()
    operations, called = counting_operations()
    built = UNet3D(config.unet, operations).eval()
    built.load_state_dict(reference.state_dict())
    layers = weight_layers(built)
    assert layers and all(isinstance(layer, tuple(vars(operations).values())) for layer in layers)
    assert any(isinstance(layer, nn.Conv1d) for layer in layers)  # init_attn's conv projections
    torch.testing.assert_close(run(built, config), run(reference, config), rtol=1e-5, atol=1e-5)
    assert [type(layer).__name__ for layer in layers if id(layer) not in called] == []


def test_weights_stored_in_bf16_by_casting_layers_compute_in_float32_within_tolerance():
    config = tiny_config("dynamicrafter_512")
    reference = randomize_(UNet3D(config.unet)).eval()
    stored = UNet3D(config.unet, casting_operations()).eval()
    stored.load_state_dict(reference.state_dict())
    converted = store_layer_weights(stored, torch.bfloat16)
    stored.compute_dtype = torch.float32
    assert converted == sum(len(list(layer.parameters(recurse=False))) for layer in weight_layers(stored))
    assert stored.out[2].weight.dtype == torch.bfloat16 and stored.dtype == torch.float32
    in_layers = {id(parameter) for layer in weight_layers(stored) for parameter in layer.parameters(recurse=False)}
    others = [parameter for parameter in stored.parameters() if id(parameter) not in in_layers]
    assert all(parameter.dtype == torch.float32 for parameter in others)
    expected, got = run(reference, config), run(stored, config)
    assert got.dtype == torch.float32
    relative = relative_error(got, expected)
    assert 0 < relative < 0.02, relative  # bf16 keeps 8 bits of mantissa: about 0.4% per weight


def test_a_namespace_without_a_layer_class_is_refused_by_name():
    partial = SimpleNamespace(**{name: getattr(nn, name) for name in LAYER_NAMES if name != "Conv3d"})
    with pytest.raises(TypeError, match="lacks \\['Conv3d'\\]"):
        UNet3D(tiny_config("univg_base").unet, partial)
    not_a_linear = SimpleNamespace(**{**vars(TORCH_OPERATIONS), "Linear": nn.Conv1d})
    with pytest.raises(TypeError, match="must subclass torch.nn.Linear"):
        check_operations(not_a_linear)


# (videos, latent frames, height, width); at 48 x 64 a materialised score matrix would be 2.5
# times the whole activation peak, so the estimate must follow the fused attention the CPU runs
MEMORY_SHAPES = [(1, 4, 8, 8), (2, 4, 16, 16), (1, 8, 16, 24), (3, 2, 8, 16), (1, 2, 48, 64)]


@pytest.mark.parametrize("family", ["videocrafter2_t2v_512", "dynamicrafter_512"])
def test_the_meta_device_estimate_covers_the_cpu_allocators_peak_within_1_5x(family):
    """What memory planning reserves (the meta-device peak and its margin) against every
    allocation and free the CPU allocator saw in a real call of the same shape."""
    config = tiny_config(family)
    unet = randomize_(UNet3D(config.unet)).eval()
    generator = torch.Generator().manual_seed(0)
    rows = []
    for videos, frames, height, width in MEMORY_SHAPES:
        x = torch.randn(videos, config.unet.in_channels, frames, height, width, generator=generator)
        context = torch.randn(videos, 77, config.unet.context_dim, generator=generator)
        image = None
        if config.unet.image_cross_attention:
            image = torch.randn(videos, 16, config.unet.context_dim, generator=generator)

        def call():
            with torch.no_grad():
                unet(x, torch.full((videos,), 500), context=context, image_context=image, fs=3)

        call()  # first-call allocations (kernels' caches) are not the call's
        measured = measured_cpu_peak_bytes(call)
        estimate = planned_activation_bytes(config.unet, videos, frames, height, width,
                                            image_tokens=16 if image is not None else None)
        rows.append((videos, frames, height, width, estimate, measured, round(estimate / measured, 3)))
    assert all(measured <= estimate <= 1.5 * measured for *_, estimate, measured, _ in rows), rows
    assert rows[1][4] > rows[0][4]  # more pixels, more memory


def test_the_estimate_grows_with_the_video_and_the_dtype_width():
    config = tiny_config("videocrafter2_t2v_512").unet
    one = activation_peak_bytes(config, 1, 4, 16, 16)
    assert activation_peak_bytes(config, 2, 4, 16, 16) > 1.8 * one
    assert activation_peak_bytes(config, 1, 4, 32, 32) > 3.5 * one
    assert activation_peak_bytes(config, 1, 4, 16, 16, torch.bfloat16) < 0.75 * one
