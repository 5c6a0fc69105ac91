"""What a fine-tuning run is asked to do: `TrainOptions` (each field with its command-line help,
which `univg_core.cli.train` turns into flags) and `validate`, which refuses a bad set before any
file is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from .model_setup import TrainingSetupError
from .objective import TASKS

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _option(default, help: str, **cli):
    """A TrainOptions field with its command-line help (cli: choices, flag)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainOptions:
    """Every setting of a training run; `python -m univg_core.cli.train` makes one flag per field."""

    task: str = field(metadata={"help": "which model to train", "choices": sorted(TASKS)})
    init: str = field(metadata={"help": "checkpoint to start from (.ckpt or .safetensors, with its VAE and CLIP)"})
    data: str = field(metadata={"help": "folder of clips (mp4/webm/...) with <clip>.txt captions or captions.csv"})
    out: str = field(metadata={"help": "the .safetensors to write (its resumable state goes to OUT.state.pt)"})
    vae: Optional[str] = _option(None, "VAE in its own file (as ComfyUI's VAELoader reads); default: the --init file's")
    text_encoder: Optional[str] = _option(
        None, "text tower in its own file (OpenCLIP layout, as ComfyUI's CLIPLoader reads); default: the --init file's"
    )
    image_encoder: Optional[str] = _option(
        None, "CLIP vision tower in its own file (OpenCLIP layout, visual.*); default: the --init file's"
    )
    image_tokens: bool = _option(
        True, "feed the CLIP image tokens (--no-image-tokens: train text-only; the image branch is frozen and "
        "silenced, to_v_ip = 0, so the model ignores image tokens)"
    )
    frames: int = _option(16, "frames per training clip (8-24 typical)")
    height: int = _option(320, "pixels")
    width: int = _option(512, "pixels")
    batch_size: int = _option(1, "clips per process per micro-step")
    grad_accum: int = _option(1, "micro-steps per optimiser step")
    steps: int = _option(1000, "optimiser steps in total (a resumed run counts on)")
    lr: float = _option(1e-5, "AdamW learning rate")
    weight_decay: float = _option(1e-2, "AdamW weight decay")
    bgn: bool = _option(True, "--no-bgn: animation / sr with the standard forward process (paper Table 3's ablation)")
    t_m: Optional[int] = _option(None, "BGN window start (animation 600, sr 0)")
    t_n: Optional[int] = _option(None, "BGN window end (animation 990, sr 700)")
    t_max: Optional[int] = _option(
        None, "--no-bgn only: draw t from [0, t_max] (default the whole schedule), the range a sampler that "
        "starts at t_max uses"
    )
    prediction: Optional[str] = _option(
        None, "what the network predicts (default: the task's: base and animation eps, sr v)", choices=("eps", "v")
    )
    offset_noise: float = _option(0.1, "offset-noise strength (paper 4.1)")
    object_weight: float = _option(
        0.0, "not the paper's: latent cells weigh 1 + this times their share of pixels that stand apart from the "
        "frame's median colour (a small object on a plain background, as in UniVG Mini's world)"
    )
    clean_share: float = _option(
        0.0, "sr: this share of clips get a clean low-resolution input (a 2x area downsample, upsampled back as "
        "inference does) instead of the blur, down-scale, JPEG and noise of the paper's degradations"
    )
    loop_share: float = _option(
        0.0, "interpolation: this share of clips are played there and back (frame i shows frame min(i, T-1-i)), so "
        "their last frame is their first: DynamiCrafter's loop"
    )
    zero_terminal_snr: bool = _option(False, "rescale the schedule to zero terminal SNR")
    text_dropout: Optional[float] = _option(None, "default: base 0.5, animation 0.1, sr 0.1")
    image_dropout: Optional[float] = _option(None, "default: base 0.1, animation 0.1")
    precision: str = _option("auto", "auto: bf16 autocast on CUDA, fp32 on the CPU", choices=("auto", "bf16", "fp32"))
    gradient_checkpointing: bool = _option(True, "recompute activations in the backward pass")
    ema_decay: Optional[float] = _option(None, "EMA decay (e.g. 0.9999); the output holds the EMA", flag="--ema")
    fs: Optional[int] = _option(None, "fps / frame-stride condition (default: the model's)")
    latent_crop: Optional[int] = _option(
        None, "train on random square crops of this many latent pixels (height / 8) of each clip, the same "
        "window of its degraded copy for sr: a CPU-sized way to train a model that is then run whole or tiled"
    )
    cache_dir: Optional[str] = _option(None, "encoded clips (default DATA/.univg_cache)")
    max_frames: int = _option(64, "frames decoded per clip")
    frame_stride: int = _option(1, "keep every n-th frame of a clip")
    window_stride: int = _option(4, "frames between possible window starts")
    save_every: int = _option(500, "steps between resumable state saves")
    resume: bool = _option(True, "continue from an existing OUT.state.pt")
    seed: int = _option(0, "every random draw is a function of it, the step and the sample")
    data_seed: Optional[int] = _option(
        None, "the seed of what is drawn once per clip when it is encoded (sr: its degradations; default --seed): "
        "runs of other --seed values then share one encoded copy"
    )
    save_dtype: str = _option("fp16", "dtype of the written weights", choices=sorted(SAVE_DTYPES))
    device: str = _option("auto", "auto, cuda or cpu")
    fsdp: bool = _option(False, "shard the model across processes (FSDP) instead of DDP")
    log_every: int = _option(10, "steps between log lines")
    dropout: Optional[float] = _option(
        None, "the network's dropout rate (default: its own, 0.1 in the temporal convolutions)"
    )

    @property
    def state_path(self) -> Path:
        return Path(self.out + ".state.pt")



def validate(options: TrainOptions) -> None:
    problems = []
    if options.task not in TASKS:
        problems.append(f"--task must be one of {', '.join(TASKS)}, got {options.task!r}")
    if not 1 <= options.frames <= options.max_frames:
        problems.append(f"--frames must be in [1, --max-frames={options.max_frames}], got {options.frames}")
    if options.height % 8 or options.width % 8 or options.height < 8 or options.width < 8:
        problems.append(f"--height and --width must be positive multiples of 8, got {options.height}x{options.width}")
    for name in ("batch_size", "grad_accum", "steps", "save_every", "frame_stride", "window_stride", "log_every"):
        if getattr(options, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(options, name)}")
    if options.latent_crop is not None and not 1 <= options.latent_crop <= min(options.height, options.width) // 8:
        problems.append(f"--latent-crop must be in [1, {min(options.height, options.width) // 8}] latent pixels "
                        f"(a {options.height}x{options.width} clip), got {options.latent_crop}")
    if not options.lr > 0:
        problems.append(f"--lr must be > 0, got {options.lr}")
    for name in ("text_dropout", "image_dropout", "dropout"):
        value = getattr(options, name)
        if value is not None and not 0 <= value <= 1:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
    if not options.bgn and (options.t_m is not None or options.t_n is not None):
        problems.append("--no-bgn trains without a BGN window; drop --t-m / --t-n")
    if options.t_max is not None and options.bgn:
        problems.append("--t-max applies to a run without BGN (--no-bgn); a BGN run draws t up to its --t-n")
    if options.t_max is not None and options.t_max < 1:
        problems.append(f"--t-max must be >= 1, got {options.t_max}")
    if options.ema_decay is not None and not 0 < options.ema_decay < 1:
        problems.append(f"--ema must be in (0, 1), got {options.ema_decay}")
    if not 0 <= options.clean_share <= 1:
        problems.append(f"--clean-share must be in [0, 1], got {options.clean_share}")
    if not 0 <= options.loop_share <= 1:
        problems.append(f"--loop-share must be in [0, 1], got {options.loop_share}")
    if not options.object_weight >= 0:
        problems.append(f"--object-weight must be >= 0, got {options.object_weight}")
    if not 0 <= options.offset_noise <= 1:
        problems.append(f"--offset-noise must be in [0, 1], got {options.offset_noise}")
    if options.prediction not in (None, "eps", "v"):
        problems.append(f"--prediction must be eps or v, got {options.prediction!r}")
    if options.precision not in ("auto", "bf16", "fp32"):
        problems.append(f"--precision must be auto, bf16 or fp32, got {options.precision!r}")
    if options.save_dtype not in SAVE_DTYPES:
        problems.append(f"--save-dtype must be one of {', '.join(SAVE_DTYPES)}, got {options.save_dtype!r}")
    if not options.out.endswith(".safetensors"):
        problems.append(f"--out must name a .safetensors file, got {options.out!r}")
    if problems:
        raise TrainingSetupError("; ".join(problems))
