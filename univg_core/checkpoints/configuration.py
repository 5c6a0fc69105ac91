"""A checkpoint's ModelConfig: from its UniVG metadata when it has some, otherwise from its
tensors (checkpoints.detection) on top of the family's preset; the caller's overrides on top
of either."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from ..configs import ModelConfig, ResamplerConfig, ScheduleConfig, UNetConfig, get_preset
from .detection import infer_family, infer_resampler_config, infer_unet_config
from .layout import METADATA_CONFIG, CheckpointError

_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"unet", "image_proj", "schedule"}
_UNET_FIELDS = {f.name for f in dataclasses.fields(UNetConfig)}
_SCHEDULE_FIELDS = {f.name for f in dataclasses.fields(ScheduleConfig)}
_RESAMPLER_FIELDS = {f.name for f in dataclasses.fields(ResamplerConfig)}
RESAMPLER_OVERRIDE = "resampler_"
# ModelConfig fields that files written by earlier versions carry and no one reads any more
RETIRED_MODEL_FIELDS = ("default_fps", "guidance_scale")


@dataclass
class Overrides:
    """What the caller says about the model, sorted by the config it belongs to."""

    model: dict[str, Any] = field(default_factory=dict)
    unet: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    resampler: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, overrides: dict) -> "Overrides":
        parsed = cls()
        for key, value in overrides.items():
            resampler_key = key[len(RESAMPLER_OVERRIDE) :] if key.startswith(RESAMPLER_OVERRIDE) else None
            if key in _MODEL_FIELDS:
                parsed.model[key] = value
            elif key in _UNET_FIELDS:
                parsed.unet[key] = value
            elif key in _SCHEDULE_FIELDS:
                parsed.schedule[key] = value
            elif resampler_key in _RESAMPLER_FIELDS:
                parsed.resampler[resampler_key] = value
            else:
                raise TypeError(f"load_checkpoint got an unknown override {key!r}")
        if parsed.model.get("prediction") not in (None, "eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {parsed.model['prediction']!r}")
        return parsed

    def apply(self, config: ModelConfig, resampler: bool = True) -> ModelConfig:
        """The config with these values set; `resampler=False` leaves the Resampler as is (an
        inferred one was read with the overrides as its base: its token count came from the file)."""
        image_proj = config.image_proj
        if image_proj is not None and self.resampler and resampler:
            image_proj = dataclasses.replace(image_proj, **self.resampler)
        return dataclasses.replace(
            config,
            **self.model,
            unet=dataclasses.replace(config.unet, **self.unet),
            schedule=dataclasses.replace(config.schedule, **self.schedule),
            image_proj=image_proj,
        )


def config_from_metadata(metadata: dict, name: str) -> Optional[ModelConfig]:
    """The ModelConfig a UniVG file carries (save_checkpoint writes it), or None."""
    raw = metadata.get(METADATA_CONFIG)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        for retired in RETIRED_MODEL_FIELDS:
            data.pop(retired, None)
        data["unet"] = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["unet"].items()})
        data["image_proj"] = ResamplerConfig(**data["image_proj"]) if data.get("image_proj") else None
        data["schedule"] = ScheduleConfig(**data["schedule"])
        return ModelConfig(**data)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{name}: unreadable '{METADATA_CONFIG}' metadata: {error}") from None


def infer_config(unet_state: dict, image_proj_state: dict, schedule_state: dict, overrides: Overrides, name: str) -> ModelConfig:
    """The family's preset with every field the tensors tell. The overrides inform the
    inference (a head width changes the head counts it reads)."""
    probe = infer_unet_config(unet_state, dataclasses.replace(UNetConfig(), **overrides.unet), name)
    preset = get_preset(overrides.model.get("family") or infer_family(probe, image_proj_state, schedule_state))
    config = dataclasses.replace(
        preset, unet=infer_unet_config(unet_state, dataclasses.replace(preset.unet, **overrides.unet), name)
    )
    if "scale_arr" in schedule_state and config.schedule.scale_base is not None:
        scale_base = float(schedule_state["scale_arr"][-1])
        config = dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, scale_base=scale_base))
    if image_proj_state:
        base = dataclasses.replace(preset.image_proj or ResamplerConfig(), **overrides.resampler)
        resampler = infer_resampler_config(image_proj_state, base, name)
        config = dataclasses.replace(config, image_proj=resampler)
        if config.unet.image_tokens_per_frame or resampler.video_length:
            config = config.with_unet(image_tokens_per_frame=resampler.num_queries if resampler.video_length else None)
    return config


def resolve_config(
    unet_state: dict, image_proj_state: dict, schedule_state: dict, metadata: dict, overrides: dict, name: str
) -> ModelConfig:
    parsed = Overrides.parse(overrides)
    config = config_from_metadata(metadata, name)
    inferred = config is None
    if inferred:
        config = infer_config(unet_state, image_proj_state, schedule_state, parsed, name)
    config = parsed.apply(config, resampler=not inferred)
    if image_proj_state and config.image_proj is None:
        config = dataclasses.replace(config, image_proj=infer_resampler_config(image_proj_state, None, name))
    return config
