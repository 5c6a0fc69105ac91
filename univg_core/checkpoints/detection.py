"""What the tensors of a checkpoint tell about its model: the UNet configuration from key
names and shapes, the family, the Resampler configuration."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from ..configs import ResamplerConfig, UNetConfig
from .layout import UNET_PREFIX, CheckpointError, few

def infer_unet_config(unet_state: dict, base: UNetConfig, name: str) -> UNetConfig:
    """Every field the tensors can tell; the rest stays as in `base`."""
    keys = set(unet_state)
    if "input_blocks.0.0.weight" not in keys or "out.2.weight" not in keys:
        raise CheckpointError(
            f"{name}: no video UNet found: expected keys '{UNET_PREFIX}input_blocks.0.0.weight' and "
            f"'{UNET_PREFIX}out.2.weight'; found UNet keys: {few(sorted(keys)) or 'none'}"
        )
    conv_in = unet_state["input_blocks.0.0.weight"]
    model_channels, in_channels = conv_in.shape[0], conv_in.shape[1]

    channel_mult, res_counts, attention_resolutions = [], [], []
    index, downsample = 1, 1
    while True:
        if f"input_blocks.{index}.0.in_layers.2.weight" in keys:
            level_channels, count, has_attention = None, 0, False
            while f"input_blocks.{index}.0.in_layers.2.weight" in keys:
                level_channels = unet_state[f"input_blocks.{index}.0.in_layers.2.weight"].shape[0]
                has_attention |= f"input_blocks.{index}.1.norm.weight" in keys
                count += 1
                index += 1
            channel_mult.append(level_channels // model_channels)
            res_counts.append(count)
            if has_attention:
                attention_resolutions.append(downsample)
            if f"input_blocks.{index}.0.op.weight" in keys:
                index += 1
                downsample *= 2
                continue
        break
    if not channel_mult or len(set(res_counts)) != 1:
        raise CheckpointError(f"{name}: unrecognised UNet block layout (input_blocks found: {few(sorted(keys))})")

    temporal_attention = any(re.match(r"^input_blocks\.\d+\.2\.proj_in\.weight$", key) for key in keys)
    temporal_conv = any(".temopral_conv." in key for key in keys)
    addition_attention = "init_attn.0.proj_in.weight" in keys
    if not (temporal_attention or temporal_conv or addition_attention):
        raise CheckpointError(
            f"{name}: this is an image (Stable Diffusion-style) UNet, not a video UNet: it has no temporal "
            f"layers (expected keys like 'input_blocks.1.2.proj_in.weight' or "
            f"'input_blocks.1.0.temopral_conv.conv1.2.weight'). Use a VideoCrafter2, VideoCrafter1 or "
            f"DynamiCrafter checkpoint."
        )

    attn2_k = next((key for key in sorted(keys) if key.endswith(".1.transformer_blocks.0.attn2.to_k.weight")), None)
    context_dim = unet_state[attn2_k].shape[1] if attn2_k else base.context_dim
    proj_in = next((key for key in sorted(keys) if re.match(r"^input_blocks\.\d+\.1\.proj_in\.weight$", key)), None)
    use_linear = unet_state[proj_in].ndim == 2 if proj_in else base.use_linear
    depth = len({m.group(1) for key in keys if (m := re.match(r"^input_blocks\.1\.1\.transformer_blocks\.(\d+)\.", key))})

    changes: dict[str, Any] = dict(
        in_channels=in_channels,
        out_channels=unet_state["out.2.weight"].shape[0],
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=res_counts[0],
        attention_resolutions=tuple(sorted(attention_resolutions, reverse=True)),
        context_dim=context_dim,
        use_linear=use_linear,
        transformer_depth=depth or base.transformer_depth,
        temporal_conv=temporal_conv,
        temporal_attention=temporal_attention,
        addition_attention=addition_attention,
        image_cross_attention=any(key.endswith(".attn2.to_k_ip.weight") for key in keys),
        image_cross_attention_scale_learnable=any(key.endswith(".attn2.alpha") for key in keys),
        use_relative_position=any(".relative_position_k." in key for key in keys),
    )
    table = next((key for key in sorted(keys) if key.endswith("relative_position_k.embeddings_table")), None)
    if table:
        changes["temporal_length"] = (unet_state[table].shape[0] - 1) // 2
        changes["num_head_channels"] = unet_state[table].shape[1]
    if addition_attention:
        head_channels = changes.get("num_head_channels", base.num_head_channels)
        changes["addition_attention_heads"] = max(1, unet_state["init_attn.0.proj_in.weight"].shape[0] // head_channels)
    if "fps_embedding.0.weight" in keys:
        changes.update(fs_condition=True, fps_embedding_key="fps_embedding")
    elif "framestride_embed.0.weight" in keys:
        changes.update(fs_condition=True, fps_embedding_key="framestride_embed")
    else:
        changes["fs_condition"] = False
    return dataclasses.replace(base, **changes)


def _concat(unet: UNetConfig) -> bool:
    return unet.in_channels == unet.out_channels * 2


def _scale_arr_end(schedule_state: dict) -> float:
    """DynamiCrafter's x0 scale at t = 999 (1.0: the file has no scale_arr)."""
    scale_arr = schedule_state.get("scale_arr")
    return 1.0 if scale_arr is None else float(scale_arr[-1])


def _image_queries(image_proj_state: dict) -> int:
    latents = image_proj_state.get("latents")
    return 0 if latents is None else latents.shape[1]


# (family, rule on (unet config, image_proj tensors, schedule buffers)), in order: the first rule
# that holds names the file, so a later rule may assume the earlier ones failed
FAMILY_RULES = (
    ("dynamicrafter_256", lambda unet, image, schedule: _concat(unet) and (
        unet.image_cross_attention_scale_learnable or unet.fps_embedding_key == "framestride_embed")),
    ("dynamicrafter_1024", lambda unet, image, schedule: _concat(unet) and _scale_arr_end(schedule) < 0.5),
    ("dynamicrafter_512", lambda unet, image, schedule: _concat(unet)),
    ("univg_base", lambda unet, image, schedule: unet.image_cross_attention and _image_queries(image) > 16),
    ("videocrafter1_i2v_512", lambda unet, image, schedule: unet.image_cross_attention),
    ("videocrafter1_t2v_1024", lambda unet, image, schedule: unet.use_relative_position and not unet.temporal_conv),
    ("videocrafter2_t2v_512", lambda unet, image, schedule: True),
)


def infer_family(unet: UNetConfig, image_proj_state: dict, schedule_state: dict) -> str:
    return next(family for family, rule in FAMILY_RULES if rule(unet, image_proj_state, schedule_state))


def infer_resampler_config(state: dict, base: Optional[ResamplerConfig], name: str) -> ResamplerConfig:
    base = base or ResamplerConfig()
    try:
        latents, proj_in, proj_out = state["latents"], state["proj_in.weight"], state["proj_out.weight"]
        inner = state["layers.0.0.to_q.weight"].shape[0]
    except KeyError as missing:
        raise CheckpointError(
            f"{name}: image_proj_model is incomplete: missing {missing}; found {few(sorted(state))}"
        ) from None
    total = latents.shape[1]
    per_frame = base.num_queries if base.video_length else total
    video_length = total // per_frame if base.video_length and total % per_frame == 0 and total > per_frame else None
    depth = len({m.group(1) for key in state if (m := re.match(r"^layers\.(\d+)\.", key))})
    ff_inner = state["layers.0.1.1.weight"].shape[0] if "layers.0.1.1.weight" in state else base.ff_mult * latents.shape[2]
    return dataclasses.replace(
        base,
        dim=latents.shape[2],
        depth=depth,
        heads=max(1, inner // base.dim_head),
        num_queries=per_frame if video_length else total,
        embedding_dim=proj_in.shape[1],
        output_dim=proj_out.shape[0],
        ff_mult=ff_inner // latents.shape[2],
        video_length=video_length,
    )
