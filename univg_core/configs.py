"""Model configurations: the UNet3D switches, the image Resampler, the forward-process
settings, and named presets for the open checkpoints and UniVG's three models.

Field values of the full presets follow the published inference configs of
VideoCrafter1/2 and DynamiCrafter (the "lvdm" code base); see shared/FACTS.md section 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

# the paper's Biased Gaussian Noise windows (t_m, t_n), section 3.4 and 4.1
ANIMATION_WINDOW = (600, 990)
SUPER_RESOLUTION_WINDOW = (0, 700)


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    # downsample factors (1, 2, 4, ...) at which spatial + temporal transformers run
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 64
    transformer_depth: int = 1
    context_dim: int = 1024
    use_linear: bool = True  # linear (not 1x1 conv) proj_in / proj_out in the transformers
    temporal_conv: bool = True
    temporal_attention: bool = True
    use_relative_position: bool = False  # VideoCrafter1-1024 temporal attention
    temporal_length: int = 16
    addition_attention: bool = True  # the extra `init_attn` temporal block after input_blocks.0
    addition_attention_heads: int = 8
    # Multi-condition Cross Attention: image tokens through to_k_ip / to_v_ip
    image_cross_attention: bool = False
    text_context_len: int = 77  # text tokens of an lvdm-style combined context (split_original_context)
    image_cross_attention_scale: float = 1.0
    image_cross_attention_scale_learnable: bool = False  # DynamiCrafter-256's `alpha` gate
    # DynamiCrafter gives each frame its own 16 image tokens when the count is frames*16
    image_tokens_per_frame: Optional[int] = None
    fs_condition: bool = True
    default_fs: int = 16  # the fps / frame-stride condition when none is given (each preset: its model's)
    fps_embedding_key: str = "fps_embedding"  # its name in the checkpoint file
    norm_groups: int = 32

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4

    @property
    def spatial_downsample(self) -> int:
        """Latent height and width must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)


@dataclass(frozen=True)
class ResamplerConfig:
    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 12
    num_queries: int = 16
    embedding_dim: int = 1280
    output_dim: int = 1024
    ff_mult: int = 4
    video_length: Optional[int] = None  # queries per frame x frames when set

    @property
    def total_queries(self) -> int:
        return self.num_queries * (self.video_length or 1)


@dataclass(frozen=True)
class ScheduleConfig:
    linear_start: float = 0.00085
    linear_end: float = 0.012
    timesteps: int = 1000
    zero_terminal_snr: bool = False
    # DynamiCrafter's scale_arr base (0.7 at 512, 0.3 at 1024); VideoCrafter's scale_b; None = off
    scale_base: Optional[float] = None
    scale_steps: int = 400
    timestep_spacing: str = "uniform"  # or "uniform_trailing"
    scale_factor: float = 0.18215  # VAE latent scale


@dataclass(frozen=True)
class ModelConfig:
    family: str
    unet: UNetConfig
    image_proj: Optional[ResamplerConfig] = None
    prediction: str = "eps"  # "eps" or "v"
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    guidance_rescale: float = 0.0
    # Biased Gaussian Noise window (paper 3.4); None for models not trained with BGN
    bgn_t_m: Optional[int] = None
    bgn_t_n: Optional[int] = None

    def with_unet(self, **changes) -> "ModelConfig":
        return replace(self, unet=replace(self.unet, **changes))

    @property
    def concat_first_frame(self) -> bool:
        """An animation model: the first frame's latent is concatenated to the input channels."""
        return self.unet.in_channels > self.unet.out_channels


TASKS = ("base", "animation", "interpolation", "super_resolution")


def start_timestep(config: ModelConfig, task: Optional[str] = None) -> int:
    """Where sampling starts for this model, the one rule every node and core path uses: the
    BGN t_n its file names; else the paper's t_n for its task (animation 990, super-resolution
    700); else (a base model) the schedule's last timestep, pure noise. `task` None: animation
    for a model that concatenates the first frame, base otherwise."""
    task = task or ("animation" if config.concat_first_frame else "base")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if config.bgn_t_n is not None:
        return config.bgn_t_n
    if task in ("animation", "interpolation"):
        return ANIMATION_WINDOW[1]
    if task == "super_resolution":
        return SUPER_RESOLUTION_WINDOW[1]
    return config.schedule.timesteps - 1


_DC_RESAMPLER = ResamplerConfig(video_length=16)
_VC_RESAMPLER = ResamplerConfig(video_length=None)

_PRESET_SETTINGS: dict[str, dict] = {
    "videocrafter2_t2v_512": dict(
        unet=UNetConfig(default_fs=28),
    ),
    "videocrafter1_t2v_1024": dict(
        unet=UNetConfig(temporal_conv=False, use_relative_position=True, default_fs=28),
        schedule=ScheduleConfig(scale_base=0.7),
    ),
    "videocrafter1_i2v_512": dict(
        unet=UNetConfig(image_cross_attention=True, default_fs=8),
        image_proj=_VC_RESAMPLER,
        schedule=ScheduleConfig(scale_base=0.7),
    ),
    "dynamicrafter_256": dict(
        unet=UNetConfig(
            in_channels=8,
            image_cross_attention=True,
            image_cross_attention_scale_learnable=True,
            image_tokens_per_frame=16,
            default_fs=3,
            fps_embedding_key="framestride_embed",
        ),
        image_proj=_DC_RESAMPLER,
    ),
    "dynamicrafter_512": dict(
        unet=UNetConfig(in_channels=8, image_cross_attention=True, image_tokens_per_frame=16, default_fs=24),
        image_proj=_DC_RESAMPLER,
        prediction="v",
        schedule=ScheduleConfig(zero_terminal_snr=True, scale_base=0.7, timestep_spacing="uniform_trailing"),
        guidance_rescale=0.7,
    ),
    "dynamicrafter_1024": dict(
        unet=UNetConfig(in_channels=8, image_cross_attention=True, image_tokens_per_frame=16, default_fs=10),
        image_proj=_DC_RESAMPLER,
        prediction="v",
        schedule=ScheduleConfig(zero_terminal_snr=True, scale_base=0.3, timestep_spacing="uniform_trailing"),
        guidance_rescale=0.7,
    ),
    # UniVG (paper 3.2, 4.1). F_B: text and/or image through MCA, eps-prediction.
    "univg_base": dict(
        unet=UNetConfig(image_cross_attention=True, image_tokens_per_frame=16, default_fs=8),
        image_proj=_DC_RESAMPLER,
    ),
    # F_A: F_B with the first-frame latent concatenated (C -> 2C), BGN 600..990.
    "univg_animation": dict(
        unet=UNetConfig(in_channels=8, image_cross_attention=True, image_tokens_per_frame=16, default_fs=8),
        image_proj=_DC_RESAMPLER,
        bgn_t_m=ANIMATION_WINDOW[0],
        bgn_t_n=ANIMATION_WINDOW[1],
    ),
    # F_I: F_A with the first and last frames' latents concatenated (zeros between), BGN from their blend.
    "univg_interpolation": dict(
        unet=UNetConfig(in_channels=8, image_cross_attention=True, image_tokens_per_frame=16, default_fs=8),
        image_proj=_DC_RESAMPLER,
        bgn_t_m=ANIMATION_WINDOW[0],
        bgn_t_n=ANIMATION_WINDOW[1],
    ),
    # F_SR: text-only cross attention, v-prediction, BGN 0..700.
    "univg_sr": dict(
        unet=UNetConfig(default_fs=8),
        prediction="v",
        schedule=ScheduleConfig(zero_terminal_snr=True),
        bgn_t_m=SUPER_RESOLUTION_WINDOW[0],
        bgn_t_n=SUPER_RESOLUTION_WINDOW[1],
    ),
}
# the family is the preset's name
PRESETS: dict[str, ModelConfig] = {name: ModelConfig(family=name, **settings) for name, settings in _PRESET_SETTINGS.items()}


# Tiny versions of every preset for CPU tests: same module graph, a few channels.
TINY_UNET = dict(
    model_channels=32,
    channel_mult=(1, 2),
    attention_resolutions=(2, 1),
    num_head_channels=16,
    context_dim=32,
    temporal_length=8,
)
TINY_RESAMPLER = dict(dim=32, depth=1, dim_head=8, heads=2, num_queries=4, embedding_dim=24, output_dim=32, ff_mult=2)


def tiny(config: ModelConfig) -> ModelConfig:
    image_proj = config.image_proj
    if image_proj is not None:
        video_length = 4 if image_proj.video_length else None
        image_proj = replace(image_proj, **TINY_RESAMPLER, video_length=video_length)
    unet_changes = dict(TINY_UNET)
    if config.unet.image_tokens_per_frame:
        unet_changes["image_tokens_per_frame"] = TINY_RESAMPLER["num_queries"]
    return replace(config, unet=replace(config.unet, **unet_changes), image_proj=image_proj)


for _name in list(PRESETS):
    PRESETS[f"tiny_{_name}"] = tiny(PRESETS[_name])


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; expected one of: {', '.join(sorted(PRESETS))}") from None
