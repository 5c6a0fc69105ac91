"""Load the open lvdm checkpoints (VideoCrafter1/2, DynamiCrafter) and UniVG's own files
key-for-key, inferring the UNet configuration from key names and tensor shapes.

File layout (shared/FACTS.md section 1): weights under "state_dict" (or "module" with a
16-character prefix, or bare); `model.diffusion_model.*` the UNet, `image_proj_model.*`
the Resampler, `first_stage_model.*` the VAE, `cond_stage_model.*` the text tower,
`embedder.*` the vision tower, plus schedule buffers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from ..configs import ModelConfig, ResamplerConfig, ScheduleConfig, UNetConfig, get_preset
from ..models.image_proj import Resampler
from ..models.unet3d import UNet3D

UNET_PREFIX = "model.diffusion_model."
IMAGE_PROJ_PREFIX = "image_proj_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model."
IMAGE_ENCODER_PREFIX = "embedder."
METADATA_CONFIG = "univg.config"


class CheckpointError(ValueError):
    """A file that cannot become a video model; the message names the file, what was
    expected and what was found."""


@dataclass
class LoadedCheckpoint:
    path: str
    config: ModelConfig
    unet: UNet3D
    image_proj: Optional[Resampler]
    alphas_cumprod: Optional[torch.Tensor] = None  # as stored in the file, when it is
    vae_state_dict: dict = field(default_factory=dict)
    text_encoder_state_dict: dict = field(default_factory=dict)
    image_encoder_state_dict: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def prediction(self) -> str:
        return self.config.prediction

    @property
    def schedule(self) -> ScheduleConfig:
        return self.config.schedule


# ---------------------------------------------------------------------------- reading


def _few(keys, count: int = 4) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:count])
    return shown + (f" (+{len(keys) - count} more)" if len(keys) > count else "")


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a .ckpt/.pt/.pth (torch zip or legacy pickle, loaded
    with weights_only=True) or .safetensors file, wrappers removed."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise CheckpointError(f"{name}: no such file ({path})")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < 16:
        raise CheckpointError(f"{name}: file is empty or truncated ({path.stat().st_size} bytes); expected a checkpoint")
    metadata: dict[str, str] = {}
    if path.suffix in (".safetensors", ".sft") or _looks_like_safetensors(head):
        state = _read_safetensors(path, metadata)
    else:
        state = _read_torch(path, head)
    return _unwrap(state, name), metadata


def _looks_like_safetensors(head: bytes) -> bool:
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def _read_safetensors(path: Path, metadata: dict) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            metadata.update(reader.metadata() or {})
            return {key: reader.get_tensor(key) for key in reader.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path.name}: not a readable .safetensors file (truncated or corrupted?): {error}"
        ) from None


def _read_torch(path: Path, head: bytes) -> Any:
    name = path.name
    is_zip = head[:4] == b"PK\x03\x04"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointError(
                f"{name}: the file holds Python objects that would run code when unpickled; only plain "
                f"tensor checkpoints are loaded (weights_only=True). Found: {str(error).splitlines()[0][:200]}"
            ) from None
        raise CheckpointError(f"{name}: not a PyTorch checkpoint (unpickling failed: {error})") from None
    except Exception as error:  # the unpickler raises many kinds on garbage input
        kind = "truncated or corrupted PyTorch checkpoint" if is_zip else "not a PyTorch checkpoint or safetensors file"
        raise CheckpointError(f"{name}: {kind}: {str(error).splitlines()[0][:200]}") from None


def _unwrap(state: Any, name: str) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    elif isinstance(state, dict) and isinstance(state.get("module"), dict):
        state = state["module"]
        prefixes = {key[:16] for key in state}
        if len(prefixes) == 1:  # e.g. "_forward_module." from Lightning/DeepSpeed
            state = {key[16:]: value for key, value in state.items()}
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{name}: expected a dict of tensors (optionally under 'state_dict'), found {type(state).__name__}")
    tensors = {key: value for key, value in state.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{name}: the file holds no tensors (found keys: {_few(state)})")
    return tensors


def split_prefix(state: dict, prefix: str) -> dict:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


# -------------------------------------------------------------------------- inference


def _stage_layer_index(keys: set, stage: str, layer_prefix: str) -> set[int]:
    pattern = re.compile(rf"^{re.escape(stage)}\.(\d+)\.{re.escape(layer_prefix)}")
    return {int(m.group(1)) for key in keys if (m := pattern.match(key))}


def infer_unet_config(unet_state: dict, base: UNetConfig, name: str) -> UNetConfig:
    """Every field the tensors can tell; the rest stays as in `base`."""
    keys = set(unet_state)
    if "input_blocks.0.0.weight" not in keys or "out.2.weight" not in keys:
        raise CheckpointError(
            f"{name}: no video UNet found: expected keys '{UNET_PREFIX}input_blocks.0.0.weight' and "
            f"'{UNET_PREFIX}out.2.weight'; found UNet keys: {_few(sorted(keys)) or 'none'}"
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
        raise CheckpointError(f"{name}: unrecognised UNet block layout (input_blocks found: {_few(sorted(keys))})")

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


def infer_family(unet: UNetConfig, image_proj_state: dict, schedule_state: dict) -> str:
    if unet.in_channels == unet.out_channels * 2:
        if unet.image_cross_attention_scale_learnable or unet.fps_embedding_key == "framestride_embed":
            return "dynamicrafter_256"
        scale_arr = schedule_state.get("scale_arr")
        if scale_arr is not None and float(scale_arr[-1]) < 0.5:
            return "dynamicrafter_1024"
        return "dynamicrafter_512"
    if unet.image_cross_attention:
        latents = image_proj_state.get("latents")
        if latents is not None and latents.shape[1] > 16:
            return "univg_base"
        return "videocrafter1_i2v_512"
    if unet.use_relative_position and not unet.temporal_conv:
        return "videocrafter1_t2v_1024"
    return "videocrafter2_t2v_512"


def infer_resampler_config(state: dict, base: Optional[ResamplerConfig], name: str) -> ResamplerConfig:
    base = base or ResamplerConfig()
    try:
        latents, proj_in, proj_out = state["latents"], state["proj_in.weight"], state["proj_out.weight"]
        inner = state["layers.0.0.to_q.weight"].shape[0]
    except KeyError as missing:
        raise CheckpointError(
            f"{name}: image_proj_model is incomplete: missing {missing}; found {_few(sorted(state))}"
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


def _config_from_metadata(metadata: dict, name: str) -> Optional[ModelConfig]:
    raw = metadata.get(METADATA_CONFIG)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        data["unet"] = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["unet"].items()})
        data["image_proj"] = ResamplerConfig(**data["image_proj"]) if data.get("image_proj") else None
        data["schedule"] = ScheduleConfig(**data["schedule"])
        return ModelConfig(**data)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{name}: unreadable '{METADATA_CONFIG}' metadata: {error}") from None


_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"unet", "image_proj", "schedule"}
_UNET_FIELDS = {f.name for f in dataclasses.fields(UNetConfig)}
_SCHEDULE_FIELDS = {f.name for f in dataclasses.fields(ScheduleConfig)}
_RESAMPLER_FIELDS = {f.name for f in dataclasses.fields(ResamplerConfig)}


def _apply_overrides(config: ModelConfig, overrides: dict, resampler_consumed: bool = False) -> ModelConfig:
    model, unet, schedule, resampler = {}, {}, {}, {}
    for key, value in overrides.items():
        if key in _MODEL_FIELDS:
            model[key] = value
        elif key in _UNET_FIELDS:
            unet[key] = value
        elif key in _SCHEDULE_FIELDS:
            schedule[key] = value
        elif key.startswith("resampler_") and key[len("resampler_") :] in _RESAMPLER_FIELDS:
            if not resampler_consumed:  # inference already built the Resampler config from them
                resampler[key[len("resampler_") :]] = value
        else:
            raise TypeError(f"load_checkpoint got an unknown override {key!r}")
    if model.get("prediction") not in (None, "eps", "v"):
        raise ValueError(f"prediction must be 'eps' or 'v', got {model['prediction']!r}")
    config = dataclasses.replace(
        config, **model, unet=dataclasses.replace(config.unet, **unet), schedule=dataclasses.replace(config.schedule, **schedule)
    )
    if resampler and config.image_proj is not None:
        config = dataclasses.replace(config, image_proj=dataclasses.replace(config.image_proj, **resampler))
    return config


# ---------------------------------------------------------------------------- loading


def _check_head_width(unet: UNetConfig, name: str) -> None:
    widths = {unet.model_channels * mult for mult in unet.channel_mult}
    bad = sorted(w for w in widths if w % unet.num_head_channels)
    if bad:
        raise CheckpointError(
            f"{name}: num_head_channels={unet.num_head_channels} does not divide {bad[0]} channels; "
            f"the published models use 64 - pass num_head_channels=... for this file"
        )


def _build_strict(module_factory, state: dict, name: str, what: str, prefix: str) -> nn.Module:
    """Build on the meta device, compare every key and shape, then assign the file's
    tensors: a mismatch raises before anything is half-loaded."""
    with torch.device("meta"):
        module = module_factory()
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{prefix}{key} {list(state[key].shape)} (expected {list(shape)})"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_few(prefix + k for k in missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_few(prefix + k for k in unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} tensors of the wrong shape: {_few(wrong, 3)}")
    if problems:
        raise CheckpointError(f"{name}: the {what} does not match its inferred configuration; " + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=True)
    return module


def load_checkpoint(
    path: str | os.PathLike,
    dtype: Optional[torch.dtype] = None,
    device: str | torch.device = "cpu",
    **overrides,
) -> LoadedCheckpoint:
    """Load a video diffusion checkpoint. `overrides` set what the tensors cannot tell:
    ModelConfig fields (family, prediction, ...), UNetConfig fields (num_head_channels,
    temporal_length, ...), ScheduleConfig fields, and `resampler_<field>`."""
    path = Path(path)
    name = path.name
    state, metadata = read_state_dict(path)
    unet_state = split_prefix(state, UNET_PREFIX)
    if not unet_state and "input_blocks.0.0.weight" in state:
        unet_state = {k: v for k, v in state.items() if not k.startswith(("image_proj_model.", "first_stage_model."))}
    if not unet_state:
        prefixes = sorted({key.split(".")[0] for key in state})
        raise CheckpointError(
            f"{name}: no video UNet found: expected keys starting with '{UNET_PREFIX}'; found top-level "
            f"prefixes: {_few(prefixes, 6)}"
        )
    image_proj_state = split_prefix(state, IMAGE_PROJ_PREFIX)
    schedule_state = {key: state[key] for key in ("betas", "alphas_cumprod", "scale_arr") if key in state}

    config = _config_from_metadata(metadata, name)
    inferred = config is None
    if inferred:
        # what the user says about the UNet informs the inference (head width -> head counts)
        unet_overrides = {key: value for key, value in overrides.items() if key in _UNET_FIELDS}
        probe = infer_unet_config(unet_state, dataclasses.replace(UNetConfig(), **unet_overrides), name)
        family = overrides.get("family") or infer_family(probe, image_proj_state, schedule_state)
        preset = get_preset(family)
        unet_config = infer_unet_config(unet_state, dataclasses.replace(preset.unet, **unet_overrides), name)
        config = dataclasses.replace(preset, unet=unet_config)
        if "scale_arr" in schedule_state and config.schedule.scale_base is not None:
            config = dataclasses.replace(
                config, schedule=dataclasses.replace(config.schedule, scale_base=float(schedule_state["scale_arr"][-1]))
            )
        if image_proj_state:
            resampler_overrides = {
                key[len("resampler_") :]: value for key, value in overrides.items() if key.startswith("resampler_")
            }
            base = dataclasses.replace(preset.image_proj or ResamplerConfig(), **resampler_overrides)
            resampler = infer_resampler_config(image_proj_state, base, name)
            config = dataclasses.replace(config, image_proj=resampler)
            if config.unet.image_tokens_per_frame or resampler.video_length:
                per_frame = resampler.num_queries if resampler.video_length else None
                config = config.with_unet(image_tokens_per_frame=per_frame)
    config = _apply_overrides(config, overrides, resampler_consumed=inferred)
    # DynamiCrafter-256 names the frame-stride embedding differently; the module is the same
    unet_state = {
        ("fps_embedding." + key[len("framestride_embed.") :] if key.startswith("framestride_embed.") else key): value
        for key, value in unet_state.items()
    }
    if image_proj_state and config.image_proj is None:
        config = dataclasses.replace(config, image_proj=infer_resampler_config(image_proj_state, None, name))

    _check_head_width(config.unet, name)
    unet = _build_strict(lambda: UNet3D(config.unet), unet_state, name, "UNet", UNET_PREFIX)
    image_proj = None
    if image_proj_state:
        image_proj = _build_strict(
            lambda: Resampler(config.image_proj), image_proj_state, name, "image_proj_model", IMAGE_PROJ_PREFIX
        )
    for module in (unet, image_proj):
        if module is not None:
            module.to(device=device, dtype=dtype).eval()
    return LoadedCheckpoint(
        path=str(path),
        config=config,
        unet=unet,
        image_proj=image_proj,
        alphas_cumprod=schedule_state.get("alphas_cumprod"),
        vae_state_dict=split_prefix(state, VAE_PREFIX),
        text_encoder_state_dict=split_prefix(state, TEXT_PREFIX),
        image_encoder_state_dict=split_prefix(state, IMAGE_ENCODER_PREFIX),
        metadata=metadata,
    )


# ----------------------------------------------------------------------------- saving


def checkpoint_state_dict(
    unet: UNet3D, image_proj: Optional[Resampler] = None, extra: Optional[dict[str, dict]] = None
) -> dict[str, torch.Tensor]:
    """The original key layout: `model.diffusion_model.*`, `image_proj_model.*`, plus
    `extra` component state dicts keyed by their prefix (e.g. 'first_stage_model.')."""
    state = {UNET_PREFIX + key: value for key, value in unet.state_dict().items()}
    if unet.config.fs_condition and unet.config.fps_embedding_key != "fps_embedding":
        state = {k.replace(UNET_PREFIX + "fps_embedding.", UNET_PREFIX + unet.config.fps_embedding_key + "."): v for k, v in state.items()}
    if image_proj is not None:
        state.update({IMAGE_PROJ_PREFIX + key: value for key, value in image_proj.state_dict().items()})
    for prefix, component in (extra or {}).items():
        state.update({prefix + key: value for key, value in component.items()})
    return state


def config_metadata(config: ModelConfig) -> dict[str, str]:
    return {METADATA_CONFIG: json.dumps(dataclasses.asdict(config)), "univg.family": config.family}


def save_checkpoint(
    path: str | os.PathLike,
    config: ModelConfig,
    unet: UNet3D,
    image_proj: Optional[Resampler] = None,
    extra: Optional[dict[str, dict]] = None,
    metadata: Optional[dict[str, str]] = None,
) -> None:
    """Write `.safetensors` (with the config as metadata) in the original key layout."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in checkpoint_state_dict(unet, image_proj, extra).items()}
    save_file(state, str(path), metadata={**config_metadata(config), **(metadata or {})})


def expand_input_channels(unet: UNet3D, channels: int) -> UNet3D:
    """F_B -> F_A (paper 3.2): widen the input convolution to `channels`, new weights
    zero-initialised so the output is unchanged for any content of the new channels."""
    conv = unet.input_blocks[0][0]
    old = conv.in_channels
    if channels < old:
        raise ValueError(f"expand_input_channels: cannot shrink {old} input channels to {channels}")
    if channels == old:
        return unet
    wider = nn.Conv2d(channels, conv.out_channels, 3, padding=1, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, :old] = conv.weight
        wider.bias.copy_(conv.bias)
    unet.input_blocks[0][0] = wider
    unet.config = dataclasses.replace(unet.config, in_channels=channels)
    return unet
