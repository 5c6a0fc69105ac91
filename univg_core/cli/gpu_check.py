"""Validate a CUDA machine for the pack in one command; prints a summary and writes JSON.

    python -m univg_core.cli.gpu_check [--out gpu_check.json] [--lvdm-root PATH] [--steps 25]

1. attention: the Triton kernels against SDPA at the UNet's real shapes, fp16 and bf16: max
   error and milliseconds each (Multi-condition Cross Attention's fused kernel included);
2. render: a DynamiCrafter-512-sized animation (random weights, 16 frames at 320x512, --steps
   DDIM steps under three-branch guidance) in fp16: seconds per step and peak VRAM, for ours and,
   with --lvdm-root (a DynamiCrafter checkout), for the original lvdm UNet on the same weights.

3. inside ComfyUI: `python -m tools.gpu_check_server` (from a checkout of the repository, whose
   host it starts) renders the animation workflow on a server started with `--lowvram`; this
   command names it at the end.

Without CUDA it says so and runs the CPU parts: the kernels through Triton's interpreter on a
slice of each shape (correctness only), and the render at a reduced size (model_channels 64,
4 frames at 64x64, 3 steps, attention through SDPA) so every code path runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from ..configs import get_preset
from ..diffusion import pipelines
from ..diffusion.guidance import Condition, make_guided_denoiser
from ..diffusion.schedule import alphas_cumprod_for, scale_arr_for
from ..models import attention
from ..models.unet3d import UNet3D
from .bench_memory import (PRESET, bench_config, branch_contexts, lvdm_model_fn, lvdm_unet_class, lvdm_unet_kwargs,
                           make_inputs, ours_model_fn, randomize_zero_layers_)


def attention_rows(cuda: bool) -> list[dict]:
    from .bench_attention import bench_attention

    rows = []
    for dtype in ("fp16", "bf16") if cuda else ("fp32",):
        args = SimpleNamespace(device="cuda" if cuda else "cpu", dtype="fp16" if dtype == "fp32" else dtype,
                               kind=None, warmup=3, repeats=10, verbose=False)
        result = bench_attention(args)
        rows += [dict(row, dtype=result["dtype"]) for row in result["rows"]]
    return rows


def render(unet, model_fn, config, inputs: dict, steps: int, device: torch.device, dtype: torch.dtype) -> dict:
    """A DDIM animation of the first frame under multi-condition guidance: seconds per step, peak memory."""
    contexts = {name: Condition(*(part.to(device, dtype) for part in pair))
                for name, pair in branch_contexts(inputs).items()}
    fs = torch.tensor([float(config.unet.default_fs)], device=device, dtype=dtype)
    inner = model_fn(unet, fs)

    def model(x, t, text, image):
        return inner(x.to(dtype), t, text, image).float()

    denoise = make_guided_denoiser(model, "multi", contexts, 7.5, 2.0, guidance_rescale=config.guidance_rescale)
    first = inputs["x"][:, :4, 0].to(device)
    frames = inputs["x"].shape[2]
    alphas_cumprod = alphas_cumprod_for(config.schedule).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with torch.inference_mode():
        video = pipelines.animate(denoise, first, frames, alphas_cumprod, config.prediction, steps=steps,
                                  t_n=999, sampler="ddim", generator=torch.Generator().manual_seed(0),
                                  scale_arr=scale_arr_for(config.schedule).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"seconds_per_step": seconds / steps, "peak_vram_gib": peak, "finite": bool(torch.isfinite(video).all()),
            "video": video.float().cpu()}


def render_rows(cuda: bool, steps: int, lvdm_root: Path | None) -> list[dict]:
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    config = get_preset(PRESET)
    unet_config = bench_config(quick=not cuda)
    config = dataclasses.replace(config, unet=unet_config)
    frames, height, width = (16, 320, 512) if cuda else (4, 64, 64)
    steps = steps if cuda else 3
    torch.manual_seed(0)
    ours = UNet3D(unet_config)
    randomize_zero_layers_(ours)
    inputs = make_inputs(unet_config, frames, height, width)
    rows = []
    state = ours.state_dict()
    ours = ours.to(device, dtype).eval()
    result = render(ours, ours_model_fn, config, inputs, steps, device, dtype)
    reference = result.pop("video")
    rows.append({"model": "ours", **result})
    del ours
    if lvdm_root is not None:
        lvdm = lvdm_unet_class(lvdm_root)(**lvdm_unet_kwargs(unet_config)).eval()
        lvdm.load_state_dict(state, strict=True)
        lvdm = lvdm.to(device, dtype)
        result = render(lvdm, lvdm_model_fn, config, inputs, steps, device, dtype)
        video = result.pop("video")
        rows.append({"model": "lvdm", **result, "max_abs_diff_vs_ours": float((video - reference).abs().max())})
    shape = [frames, height, width]
    return [dict(row, frames_height_width=shape, steps=steps, dtype=str(dtype).split(".")[-1]) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--lvdm-root", type=Path, default=None, help="a DynamiCrafter checkout (holding lvdm/)")
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda:
        print("no CUDA: running the CPU parts only (kernels through Triton's interpreter on slices, "
              "correctness only; the render at a reduced size)", flush=True)
        os.environ.setdefault("TRITON_INTERPRET", "1")
    report = {"cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
              "torch": torch.__version__}
    try:
        report["attention"] = attention_rows(cuda)
    except ImportError as missing:  # no Triton here: SDPA is what the UNet runs
        report["attention"] = f"not run: {missing}"
    if not cuda:  # the render as a CPU user runs it: SDPA, not the kernels under the interpreter
        os.environ[attention.BACKEND_ENV] = "sdpa"
        attention.reset_backend()
    report["render"] = render_rows(cuda, args.steps, args.lvdm_root)
    args.out.write_text(json.dumps(report, indent=2))
    if isinstance(report["attention"], str):
        print(f"attention: {report['attention']}")
    else:
        worst = max(row["max_error"] for row in report["attention"])
        print(f"attention: {len(report['attention'])} shapes, largest kernel-vs-SDPA error {worst:.2e}")
    for row in report["render"]:
        vram = f", peak VRAM {row['peak_vram_gib']:.2f} GiB" if row["peak_vram_gib"] is not None else ""
        print(f"render {row['model']} {row['frames_height_width']} {row['dtype']}: "
              f"{row['seconds_per_step']:.2f} s/step{vram}, finite {row['finite']}")
    print(f"wrote {args.out}")
    if cuda:
        print("next, inside ComfyUI with --lowvram: python -m tools.gpu_check_server (from a repository checkout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
