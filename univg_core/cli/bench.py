"""Benchmarks at real shapes. Times are measured here, never in tests.

    python -m univg_core.cli.bench unet --preset videocrafter2_t2v_512 --frames 16 --height 320 --width 512

prints seconds per UNet call (batch 2, as under classifier-free guidance) and peak
memory, on CPU or CUDA, with random weights of the full-size preset.

    python -m univg_core.cli.bench train [--preset univg_mini_base]

prints seconds per training step (forward, v-loss, backward, the trainer's AdamW) and peak
memory at a preset's training shape: by default UniVG Mini's F_B (batch 8 x 8 frames of 8x8
latents, 77 text tokens), the step `train_mini` repeats 12000 times for F_B.

    python -m univg_core.cli.bench memory [--quick] [--lvdm-root PATH]

peak memory and seconds of one three-branch guided call of a DynamiCrafter-512-sized model:
ours in fp32 and with bf16 weights against the original lvdm code, each arm in its own process;
see univg_core/cli/bench_memory.py.

    python -m univg_core.cli.bench attention [--dtype fp16] [--kind mca temporal]

times the Triton kernels against SDPA per attention shape on a GPU (correctness only
on a CPU, through Triton's interpreter); see univg_core/cli/bench_attention.py.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch

from ..configs import PRESETS, get_preset
from ..models.unet3d import UNet3D

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _peak_memory_gib(device: torch.device) -> tuple[str, float]:
    if device.type == "cuda":
        return "cuda_max_allocated", torch.cuda.max_memory_allocated(device) / 2**30
    # ru_maxrss is KiB on Linux: the whole process's peak resident set
    return "process_peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _timed(call, device: torch.device, warmup: int, repeats: int):
    """Seconds of each of `repeats` calls after `warmup` untimed ones, the last call's result,
    and the peak memory (since the warm-up on CUDA)."""
    for _ in range(warmup):
        call()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return times, result, _peak_memory_gib(device)


def bench_unet(args: argparse.Namespace) -> dict:
    config = get_preset(args.preset)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet3D(config.unet).to(dtype).eval()
    parameters = sum(p.numel() for p in unet.parameters())
    latent_h, latent_w = args.height // 8, args.width // 8
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(args.batch, config.unet.in_channels, args.frames, latent_h, latent_w, generator=generator, device=device)
    context = torch.randn(args.batch, 77, config.unet.context_dim, generator=generator, device=device)
    image_context = None
    if config.unet.image_cross_attention and config.image_proj is not None:
        image_context = torch.randn(
            args.batch, config.image_proj.total_queries, config.unet.context_dim, generator=generator, device=device
        )
    timesteps = torch.full((args.batch,), 500, device=device)

    def call():
        with torch.inference_mode():
            out = unet(x, timesteps, context=context, image_context=image_context, fs=config.unet.default_fs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    times, out, (memory_kind, peak) = _timed(call, device, args.warmup, args.repeats)
    return {
        "bench": "unet",
        "preset": args.preset,
        "parameters": parameters,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "input": [args.batch, config.unet.in_channels, args.frames, latent_h, latent_w],
        "output_finite": bool(torch.isfinite(out).all()),
        "seconds_per_call": min(times),
        "seconds_all": [round(t, 3) for t in times],
        memory_kind + "_gib": round(peak, 2),
    }


MINI_PRESET = "univg_mini_base"


def _train_config(preset: str):
    if preset == MINI_PRESET:
        from ..mini.models import mini_base_config

        return mini_base_config(scale_factor=1.0)
    return get_preset(preset)


def bench_train(args: argparse.Namespace) -> dict:
    from ..training.trainer import make_optimizer

    config = _train_config(args.preset)
    device = torch.device(args.device)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet3D(config.unet).train()
    optimizer = make_optimizer(unet.parameters(), 1e-4, 0.0, device)
    generator = torch.Generator(device).manual_seed(0)
    latent = args.height // 8, args.width // 8
    x = torch.randn(args.batch, config.unet.in_channels, args.frames, *latent, generator=generator, device=device)
    target = torch.randn(args.batch, config.unet.out_channels, args.frames, *latent, generator=generator,
                         device=device)
    context = torch.randn(args.batch, 77, config.unet.context_dim, generator=generator, device=device)
    timesteps = torch.randint(0, 1000, (args.batch,), generator=generator, device=device)

    def step() -> float:
        loss = torch.nn.functional.mse_loss(unet(x, timesteps, context=context, fs=config.unet.default_fs), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return float(loss.detach())

    times, loss, (memory_kind, peak) = _timed(step, device, args.warmup, args.repeats)
    return {
        "bench": "train",
        "preset": args.preset,
        "parameters": sum(p.numel() for p in unet.parameters()),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "input": [args.batch, config.unet.in_channels, args.frames, *latent],
        "loss_finite": math.isfinite(loss),
        "seconds_per_step_median": statistics.median(times),
        "seconds_all": [round(t, 3) for t in times],
        memory_kind + "_gib": round(peak, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    unet = sub.add_parser("unet", help="seconds per UNet call and peak memory at a real shape")
    unet.add_argument("--preset", default="videocrafter2_t2v_512", choices=sorted(PRESETS))
    unet.add_argument("--frames", type=int, default=16)
    unet.add_argument("--height", type=int, default=320, help="pixels; the latent is height/8")
    unet.add_argument("--width", type=int, default=512, help="pixels; the latent is width/8")
    unet.add_argument("--batch", type=int, default=2, help="2 = conditional + unconditional under guidance")
    unet.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    unet.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: fp16 on CUDA, fp32 on CPU")
    unet.add_argument("--warmup", type=int, default=None, help="default: 1 on CUDA, 0 on CPU")
    unet.add_argument("--repeats", type=int, default=1)
    train = sub.add_parser("train", help="seconds per training step and peak memory (default: UniVG Mini's F_B)")
    train.add_argument("--preset", default=MINI_PRESET, choices=sorted([*PRESETS, MINI_PRESET]))
    train.add_argument("--frames", type=int, default=8)
    train.add_argument("--height", type=int, default=64, help="pixels; the latent is height/8")
    train.add_argument("--width", type=int, default=64, help="pixels; the latent is width/8")
    train.add_argument("--batch", type=int, default=8)
    train.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    train.add_argument("--warmup", type=int, default=3)
    train.add_argument("--repeats", type=int, default=20)
    memory = sub.add_parser("memory", help="peak memory and seconds of a guided call: fp32, bf16, lvdm, side by side")
    from .bench_memory import add_arguments as memory_arguments

    memory_arguments(memory)
    attention = sub.add_parser("attention", help="Triton kernels vs SDPA at the UNet's attention shapes")
    attention.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    attention.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="GPU only; the CPU check is fp32")
    attention.add_argument("--kind", nargs="*", choices=["spatial", "temporal", "mca"], help="default: all")
    attention.add_argument("--warmup", type=int, default=3)
    attention.add_argument("--repeats", type=int, default=10)
    attention.add_argument("--json", action="store_true", help="print JSON instead of a table")
    attention.add_argument("--verbose", action="store_true", help="print each row as it is measured")
    args = parser.parse_args(argv)
    if args.what == "attention":
        from .bench_attention import bench_attention, format_table

        result = bench_attention(args)
        print(json.dumps(result, indent=2) if args.json else format_table(result))
        return 0
    if args.what == "memory":
        from .bench_memory import bench_memory, summary_line

        report = bench_memory(args)
        json.dump(report, sys.stdout, indent=2)
        print()
        print(summary_line(report))
        return 0
    if args.what == "train":
        json.dump(bench_train(args), sys.stdout, indent=2)
        print()
        return 0
    if args.height % 64 or args.width % 64:
        parser.error(f"--height and --width must be multiples of 64, got {args.height}x{args.width}")
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("fp16" if cuda else "fp32")
    args.warmup = args.warmup if args.warmup is not None else (1 if cuda else 0)
    result = bench_unet(args)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
