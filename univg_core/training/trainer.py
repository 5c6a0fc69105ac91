"""The fine-tuning loop: AdamW, optional bf16 autocast, gradient checkpointing and
accumulation, optional EMA, DistributedDataParallel (or FSDP) across `torchrun` processes,
resumable state, and a `.safetensors` in the original layout at the end.

Every random draw of a training sample (its window, t, noise, condition dropouts) is a
function of (seed, global sample number) alone, so one process with a global batch of N and
N processes with a batch of 1 see the same samples. The network's own dropout layers (0.1 in
VideoCrafter's temporal convolutions) draw from the global RNG, which is re-seeded from
(seed, step, micro-batch, rank) before every forward pass: a resumed run continues exactly
where it stopped. Their masks are drawn per rank, so the N-process == 1-process equality
is exact with --dropout 0."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..checkpoints import COMPANIONS_KEY, IMAGE_ENCODER_PREFIX, TEXT_PREFIX, VAE_PREFIX, load_checkpoint, save_checkpoint
from ..diffusion.schedule import alphas_cumprod_for, offset_noise
from ..files import write_atomically
from .cache import CachedClips, CacheSpec, build_cache, encoders_from_checkpoint
from .data import DataError, find_clips
from .distributed import World, barrier, broadcast_from_main, init_world, mean_over_ranks, shutdown
from .model_setup import (
    TrainedNetwork, TrainingSetupError, bgn_window, build_network, network_from_state, check_text_width, target_config, uses_image_branch,
)
from .object_weight import loss_weights, weighted_mse
from .options import SAVE_DTYPES, TrainOptions, validate  # noqa: F401  (the training API's names)
from .objective import TASKS, condition_latents, noisy_input_and_target, there_and_back, timestep_range

STATE_VERSION = 1


# --------------------------------------------------------------------- per-sample draws


def sample_generator(seed: int, sample_number: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + sample_number) % (2**63))


def seed_network_dropout(options: TrainOptions, step: int, micro: int, world: World) -> None:
    torch.manual_seed(((options.seed * 1_000_003 + step) * 1009 + micro) * 1013 + world.rank)


def set_network_dropout(model: torch.nn.Module, rate: Optional[float]) -> None:
    if rate is None:
        return
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate


def sample_numbers(step: int, micro: int, world: World, options: TrainOptions) -> list[int]:
    """Global sample numbers of this rank's micro-batch: rank r of a world of size W takes the
    r-th slice of the global batch."""
    first = ((step * options.grad_accum + micro) * world.size + world.rank) * options.batch_size
    return list(range(first, first + options.batch_size))


def window_index(sample_number: int, count: int, seed: int) -> int:
    """Samples walk through a fresh permutation of the windows every epoch."""
    epoch, position = divmod(sample_number, count)
    return int(_epoch_order(count, seed, epoch)[position])


@functools.lru_cache(maxsize=4)
def _epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    # drawn once per epoch, not once per sample
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 7919 + epoch))


@dataclass
class Batch:
    x: torch.Tensor
    target: torch.Tensor
    t: torch.Tensor
    text: torch.Tensor
    image: Optional[torch.Tensor]
    weights: Optional[torch.Tensor] = None  # [B, 1, T, h, w] loss weights (--object-weight)


def make_batch(numbers, clips: CachedClips, spec, window, alphas_cumprod, options, use_image, text_dropout, image_dropout):
    t_low, t_high = timestep_range(spec, window, len(alphas_cumprod), options.t_max)
    pieces = {"x": [], "target": [], "t": [], "text": [], "image": [], "weights": []}
    for number in numbers:
        item = clips[window_index(number, len(clips), options.seed)]
        generator = sample_generator(options.seed, number)
        latents = item["latents"].unsqueeze(0)
        lowres = item["lowres"].unsqueeze(0) if "lowres" in item else None
        weights = loss_weights(item["object"], options.object_weight) if options.object_weight else None
        if options.latent_crop:
            latents, lowres, weights = _random_crop(latents, lowres, weights, options.latent_crop, generator)
        if options.loop_share and spec.keyframes == "first_last" and bool(torch.rand((), generator=generator) < options.loop_share):
            latents = there_and_back(latents)
            weights = there_and_back(weights) if weights is not None else None
        t = torch.randint(t_low, t_high + 1, (1,), generator=generator)
        eps = offset_noise(tuple(latents.shape), options.offset_noise, generator=generator)
        drop_text = bool(torch.rand((), generator=generator) < text_dropout)
        drop_image = bool(torch.rand((), generator=generator) < image_dropout)
        condition = condition_latents(spec, latents, lowres)
        x, target = noisy_input_and_target(spec, latents, condition, eps, t, alphas_cumprod, window)
        pieces["x"].append(x)
        pieces["target"].append(target)
        pieces["t"].append(t)
        pieces["weights"].append(weights)
        pieces["text"].append(clips.null["text"].float() if drop_text else item["text"])
        if use_image:
            pieces["image"].append(clips.null["image"].float() if drop_image else item["image"])
    return Batch(
        x=torch.cat(pieces["x"]), target=torch.cat(pieces["target"]), t=torch.cat(pieces["t"]),
        text=torch.stack(pieces["text"]), image=torch.stack(pieces["image"]) if use_image else None,
        weights=torch.cat(pieces["weights"]) if options.object_weight else None,
    )


def _random_crop(latents: torch.Tensor, lowres: Optional[torch.Tensor], weights: Optional[torch.Tensor], size: int,
                 generator: torch.Generator):
    """The same size x size window of [B, C, T, h, w] latents, of their degraded copy and of their loss weights."""
    height, width = latents.shape[-2:]
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    window = (..., slice(top, top + size), slice(left, left + size))
    return tuple(part[window] if part is not None else None for part in (latents, lowres, weights))


# ------------------------------------------------------------------------------ state


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1 - self.decay)

    def full(self) -> dict:
        """The averages as whole CPU tensors (FSDP keeps them sharded like the parameters)."""
        return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).cpu() for k, v in self.shadow.items()}

    def load(self, shadow: dict, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            value = shadow[name].float().to(p.device if not hasattr(p, "device_mesh") else "cpu")
            if hasattr(p, "device_mesh"):  # re-shard like the parameter
                from torch.distributed.tensor import distribute_tensor

                value = distribute_tensor(value.to(p.to_local().device), p.device_mesh, p.placements)
            self.shadow[name] = value


def _signature(options: TrainOptions) -> dict:
    keep = ("task", "prediction", "image_tokens", "bgn", "frames", "height", "width", "batch_size", "grad_accum", "seed", "t_m", "t_n", "zero_terminal_snr")
    signature = {name: getattr(options, name) for name in keep}
    for name in ("latent_crop", "object_weight", "t_max", "data_seed"):  # only when set: runs saved before the option still resume
        if getattr(options, name):
            signature[name] = getattr(options, name)
    return signature


def gather_state(wrapped, optimizer) -> tuple[dict, dict]:
    """Full (unsharded) model and optimiser state on the CPU, for plain, DDP and FSDP models alike."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(wrapped, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def restore_state(wrapped, optimizer, model_state: dict, optimizer_state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(wrapped, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                   options=StateDictOptions(full_state_dict=True))


def save_state(path: Path, model_state: dict, optimizer_state: dict, ema: Optional[EMA], step: int, options) -> None:
    state = {
        "version": STATE_VERSION, "step": step, "signature": _signature(options),
        "model": model_state, "optimizer": optimizer_state, "ema": ema.full() if ema else None,
    }
    write_atomically(path, lambda partial: torch.save(state, partial))


def read_state(path: Path, options: TrainOptions) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrainingSetupError(f"{path}: unreadable training state ({error}); delete it to start afresh") from None
    if state.get("version") != STATE_VERSION or state.get("signature") != _signature(options):
        raise TrainingSetupError(
            f"{path}: the saved run used other settings ({state.get('signature')}); resume with the same settings "
            "or pass --no-resume to start afresh"
        )
    return state


# ------------------------------------------------------------------------------- loop


class Progress:
    def __init__(self, total: int, start: int, samples_per_step: int, enabled: bool, stream=None):
        self.total, self.start, self.samples_per_step = total, start, samples_per_step
        self.enabled, self.stream = enabled, stream or sys.stderr  # the stderr of now, not of import time
        self.began = time.monotonic()

    def report(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.began, 1e-9)
        done = step - self.start
        rate = done * self.samples_per_step / elapsed
        left = (self.total - step) * elapsed / max(done, 1)
        print(f"step {step}/{self.total}  loss {loss:.5f}  {rate:.2f} clips/s  eta {left / 60:.1f} min",
              file=self.stream, flush=True)


def _autocast(options: TrainOptions, device: torch.device):
    precision = options.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def make_optimizer(parameters, lr: float, weight_decay: float, device: torch.device, sharded: bool = False):
    """AdamW over the trainable parameters, fused (one kernel for all of them, where the default
    loops over them: 4% of a UniVG Mini step on a CPU) except for FSDP's sharded parameters."""
    trainable = [p for p in parameters if p.requires_grad]
    fused = not sharded and torch.device(device).type in ("cpu", "cuda")
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, fused=fused)


def _wrap(model: TrainedNetwork, world: World, options: TrainOptions):
    if not world.distributed:
        return model
    if options.fsdp:
        from torch.distributed.fsdp import fully_shard

        for stage in [*model.unet.input_blocks, model.unet.middle_block, *model.unet.output_blocks]:
            fully_shard(stage)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _prepare_data(options, loaded, spec, world, use_image, log) -> CachedClips:
    spec_cache = CacheSpec(
        height=options.height, width=options.width, frames=options.frames, max_frames=options.max_frames,
        frame_stride=options.frame_stride, window_stride=options.window_stride,
        lowres=spec.uses_lowres, image_tokens=use_image,
        seed=options.seed if options.data_seed is None else options.data_seed, object_shares=bool(options.object_weight),
        clean_share=options.clean_share if spec.uses_lowres else 0.0,
    )
    cache_dir = options.cache_dir or str(Path(options.data) / ".univg_cache")
    outcome = None
    if world.is_main:
        try:
            records = find_clips(options.data)
            encoders = encoders_from_checkpoint(loaded, use_image, device=world.device, text_file=options.text_encoder,
                                                vision_file=options.image_encoder, vae_file=options.vae)
            check_text_width(loaded, encoders.text_width())
            outcome = [str(p) for p in build_cache(records, encoders, spec_cache, cache_dir, log)]
            del encoders
        except (DataError, TrainingSetupError, ValueError) as error:
            outcome = error
    outcome = broadcast_from_main(world, outcome)  # the other ranks wait here, and fail with rank 0
    if isinstance(outcome, Exception):
        raise outcome
    return CachedClips([Path(p) for p in outcome], options.frames)


def train(options: TrainOptions, log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)) -> Path:
    """Run (or resume) a fine-tune; returns the written `.safetensors`."""
    validate(options)
    spec = TASKS[options.task]
    if options.prediction is not None:
        spec = dataclasses.replace(spec, prediction=options.prediction)
    if not Path(options.init).is_file():
        raise TrainingSetupError(f"--init {options.init}: no such file")
    world = init_world(options.device)
    try:
        loaded = load_checkpoint(options.init, dtype=torch.float32, device="cpu")
        window = bgn_window(spec, options.t_m, options.t_n, loaded.config.schedule.timesteps) if options.bgn else None
        if options.t_max is not None and options.t_max >= loaded.config.schedule.timesteps:
            raise TrainingSetupError(f"--t-max must be below the schedule's {loaded.config.schedule.timesteps} "
                                     f"timesteps, got {options.t_max}")
        config = target_config(loaded.config, spec, window, options.zero_terminal_snr, options.init)
        use_image = uses_image_branch(spec, loaded) and options.image_tokens
        if world.is_main and spec.uses_image and not uses_image_branch(spec, loaded):
            log(f"{options.init}: no image branch (Multi-condition Cross Attention); training text-only")
        clips = _prepare_data(options, loaded, spec, world, use_image, log)
        return _run(options, world, loaded, spec, window, config, use_image, clips, log)
    finally:
        shutdown(world)


def _run(options, world, loaded, spec, window, config, use_image, clips, log) -> Path:
    torch.manual_seed(options.seed)
    model = build_network(loaded, config, use_image, silence_image_branch=not options.image_tokens).to(world.device).train()
    model.unet.gradient_checkpointing = options.gradient_checkpointing
    set_network_dropout(model, options.dropout)
    alphas_cumprod = alphas_cumprod_for(config.schedule)
    text_dropout = spec.text_dropout if options.text_dropout is None else options.text_dropout
    image_dropout = spec.image_dropout if options.image_dropout is None else options.image_dropout
    fs = options.fs if options.fs is not None else config.unet.default_fs

    wrapped = _wrap(model, world, options)
    optimizer = make_optimizer(wrapped.parameters(), options.lr, options.weight_decay, world.device, options.fsdp)
    start, saved_ema = 0, None
    state_path = options.state_path
    if options.resume and state_path.is_file():
        state = read_state(state_path, options)
        restore_state(wrapped, optimizer, state["model"], state["optimizer"])
        saved_ema, start = state["ema"], int(state["step"])
        if world.is_main:
            log(f"resumed from {state_path} at step {start}")
    # made after the restore: a run that starts averaging on resume averages from the resumed weights
    ema = EMA(model, options.ema_decay) if options.ema_decay else None
    if ema is not None and saved_ema is not None:
        ema.load(saved_ema, model)
    samples_per_step = options.batch_size * options.grad_accum * world.size
    progress = Progress(options.steps, start, samples_per_step, world.is_main)
    step = start

    def save_progress() -> dict:
        model_state, optimizer_state = gather_state(wrapped, optimizer)  # collective: every rank calls it
        if world.is_main:
            save_state(state_path, model_state, optimizer_state, ema, step, options)
        return model_state

    try:
        while step < options.steps:
            loss_sum = 0.0
            for micro in range(options.grad_accum):
                batch = make_batch(
                    sample_numbers(step, micro, world, options), clips, spec, window, alphas_cumprod, options,
                    use_image, text_dropout, image_dropout,
                )
                last = micro == options.grad_accum - 1
                context = wrapped.no_sync() if (not last and hasattr(wrapped, "no_sync")) else contextlib.nullcontext()
                seed_network_dropout(options, step, micro, world)
                with context, _autocast(options, world.device):
                    output = wrapped(
                        batch.x.to(world.device), batch.t.to(world.device), batch.text.to(world.device),
                        None if batch.image is None else batch.image.to(world.device), fs,
                    )
                    weights = None if batch.weights is None else batch.weights.to(world.device)
                    loss = weighted_mse(output.float(), batch.target.to(world.device).float(), weights)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss is {value} at step {step}; lower --lr or use --precision fp32")
                (loss / options.grad_accum).backward()
                loss_sum += value / options.grad_accum
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
            step += 1
            shown = mean_over_ranks(world, loss_sum)
            if step % options.log_every == 0 or step == options.steps:
                progress.report(step, shown)
            if step % options.save_every == 0 and step < options.steps:
                save_progress()
    except BaseException:
        if step > start and not world.distributed:  # keep every finished step (with several ranks the
            save_progress()  # last periodic save stands: the others may be gone)
        raise
    final_state = save_progress()
    out = Path(options.out)
    if world.is_main:
        weights = ema.full() if ema is not None else final_state
        _write_output(out, weights, config, loaded, options, step, use_image)
        log(f"wrote {out}")
    barrier(world)
    return out


def _write_output(out: Path, weights: dict, config, loaded, options: TrainOptions, step: int, use_image: bool) -> None:
    unet, image_proj = network_from_state(config, weights, SAVE_DTYPES[options.save_dtype])
    extra = {VAE_PREFIX: loaded.vae_state_dict, TEXT_PREFIX: loaded.text_encoder_state_dict}
    if loaded.image_encoder_state_dict:
        extra[IMAGE_ENCODER_PREFIX] = loaded.image_encoder_state_dict
    metadata = {"univg.task": options.task, "univg.trained_from": Path(options.init).name, "univg.steps": str(step)}
    if COMPANIONS_KEY in loaded.metadata:  # parts kept in their own files stay the same parts
        metadata[COMPANIONS_KEY] = loaded.metadata[COMPANIONS_KEY]
    write_atomically(out, lambda partial: save_checkpoint(partial, config, unet, image_proj, extra=extra,
                                                         metadata=metadata))
