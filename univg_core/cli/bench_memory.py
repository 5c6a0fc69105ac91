"""Peak memory and seconds of one guided UNet call of a DynamiCrafter-512-sized model, side by side.

    python -m univg_core.cli.bench memory [--quick] [--lvdm-root PATH]

One call of multi-condition guidance (three branches: null, text, image) on 16 frames at
320x512 (a 16x40x64 latent), random weights drawn once (seeded) and shared by every arm. Each
arm runs in a process of its own, one after another, so its peak resident memory is its own:

    ours_fp32      fp32 weights, the three branches in one batched call
    ours_bf16      bf16 weights, the branches one after another (what the UniVG samplers do when
                   free memory is short)
    ours_bf16_one  bf16 weights, one branch: the three are held to 1.5x its peak
    lvdm_fp32      the original lvdm UNetModel from --lvdm-root (a DynamiCrafter checkout: the
                   folder holding `lvdm/`), the same weights, branches batched

The last line reads
`peak_memory_ratio_vs_lvdm=R1 bf16_speedup_vs_lvdm_fp32=R2 max_abs_err=E` (R1 = ours_bf16's peak
over lvdm_fp32's, R2 = lvdm_fp32's seconds over ours_bf16's, E = the largest difference of
ours_bf16's guided output from lvdm_fp32's); without --lvdm-root, ours_fp32 stands in for lvdm
and the line says so. --quick: a reduced width (model_channels 64), a few minutes in all.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..checkpoints.layout import UNET_PREFIX
from ..checkpoints.saving import checkpoint_state_dict
from ..configs import UNetConfig, get_preset
from ..diffusion.guidance import multi_condition
from ..models.unet3d import UNet3D

PRESET = "dynamicrafter_512"
ARMS = ("ours_fp32", "ours_bf16", "ours_bf16_one", "lvdm_fp32")
BRANCHES = ("null", "text", "image")


def bench_config(quick: bool) -> UNetConfig:
    config = get_preset(PRESET).unet
    return dataclasses.replace(config, model_channels=64) if quick else config


def lvdm_unet_kwargs(config: UNetConfig) -> dict:
    """The lvdm UNetModel arguments of a DynamiCrafter-style config (its inference yaml's names)."""
    return dict(
        in_channels=config.in_channels, out_channels=config.out_channels, model_channels=config.model_channels,
        attention_resolutions=list(config.attention_resolutions), num_res_blocks=config.num_res_blocks,
        channel_mult=list(config.channel_mult), num_head_channels=config.num_head_channels,
        transformer_depth=config.transformer_depth, context_dim=config.context_dim, use_linear=config.use_linear,
        use_checkpoint=False, temporal_conv=config.temporal_conv, temporal_attention=config.temporal_attention,
        temporal_selfatt_only=True, use_relative_position=config.use_relative_position, use_causal_attention=False,
        temporal_length=config.temporal_length, addition_attention=config.addition_attention,
        image_cross_attention=config.image_cross_attention, default_fs=config.default_fs,
        fs_condition=config.fs_condition, dropout=0.0,
    )


def make_inputs(config: UNetConfig, frames: int, height: int, width: int) -> dict:
    generator = torch.Generator().manual_seed(1)
    tokens = (config.image_tokens_per_frame or 16) * frames
    return {
        "x": torch.randn(1, config.in_channels, frames, height // 8, width // 8, generator=generator),
        "t": torch.tensor([700]),
        "text": torch.randn(1, 77, config.context_dim, generator=generator),
        "null_text": torch.randn(1, 77, config.context_dim, generator=generator),
        "image": torch.randn(1, tokens, config.context_dim, generator=generator),
        "null_image": torch.randn(1, tokens, config.context_dim, generator=generator),
    }


def branch_contexts(inputs: dict) -> dict:
    """(text, image tokens) of each branch of multi-condition guidance."""
    return {"null": (inputs["null_text"], inputs["null_image"]), "text": (inputs["text"], inputs["null_image"]),
            "image": (inputs["null_text"], inputs["image"])}


def reset_peak_rss() -> bool:
    """Start the process's peak resident memory (VmHWM) afresh, where Linux allows it, so the peak
    read after a call is the call's with the weights resident, not the loading's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def randomize_zero_layers_(unet: torch.nn.Module, seed: int = 0) -> None:
    """The layers lvdm initialises to zero (each block's output projection, the UNet's last
    convolution) drawn at random too, at a tenth of a layer's usual scale (the residual branches of a
    trained model are small), so the output depends on every layer and arms can differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in unet.parameters():
            if not parameter.any():
                fan_in = parameter[0].numel() if parameter.ndim > 1 else 2500
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator) / fan_in**0.5)


def _load_ours(config: UNetConfig, weights: Path, dtype: torch.dtype) -> UNet3D:
    """Built on the meta device and filled tensor by tensor, so the weights exist once, in `dtype`."""
    from safetensors import safe_open

    with torch.device("meta"):
        unet = UNet3D(config).to(dtype)
    unet = unet.to_empty(device="cpu").eval()
    parameters = dict(unet.named_parameters())
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():
            with torch.no_grad():
                parameters[key[len(UNET_PREFIX):]].copy_(handle.get_tensor(key))
    return unet


def lvdm_unet_class(lvdm_root: Path):
    """lvdm's UNetModel from a DynamiCrafter checkout (the folder holding `lvdm/`)."""
    sys.path.insert(0, str(lvdm_root))
    from lvdm.modules.networks.openaimodel3d import UNetModel  # the user's checkout

    return UNetModel


def _load_lvdm(config: UNetConfig, weights: Path, lvdm_root: Path):
    from safetensors.torch import load_file

    unet = lvdm_unet_class(lvdm_root)(**lvdm_unet_kwargs(config)).eval()
    state = {key[len(UNET_PREFIX):]: value for key, value in load_file(str(weights)).items()}
    unet.load_state_dict(state, strict=True)
    return unet


def lvdm_model_fn(unet, fs: torch.Tensor):
    """(x, t, text, image) -> output of lvdm's UNet, which takes text and image tokens as one context."""
    def model(x, t, text, image):
        return unet(x, t, context=torch.cat([text, image], dim=1), fs=fs.expand(x.shape[0]))

    return model


def ours_model_fn(unet, fs: torch.Tensor):
    def model(x, t, text, image):
        return unet(x, t, context=text, image_context=image, fs=fs.expand(x.shape[0]))

    return model


def run_arm(arm: str, config: UNetConfig, weights: Path, inputs: dict, lvdm_root: Path | None) -> dict:
    """One arm in this process: its guided output, seconds and peak resident memory."""
    torch.set_grad_enabled(False)
    contexts = branch_contexts(inputs)
    fs = torch.tensor([float(config.default_fs)])
    if arm == "lvdm_fp32":
        model = lvdm_model_fn(_load_lvdm(config, weights, lvdm_root), fs)
    else:
        model = ours_model_fn(_load_ours(config, weights, torch.float32 if arm == "ours_fp32" else torch.bfloat16), fs)

    def call(x, t, text, image):
        return model(x, t, text, image).float()
    import gc

    gc.collect()
    weights_gib = peak_rss_gib()
    call_peak_only = reset_peak_rss()
    x, t = inputs["x"], inputs["t"]
    start = time.perf_counter()
    if arm == "ours_bf16_one":
        outputs = [call(x, t, *contexts["text"])]
    elif arm == "ours_bf16":
        outputs = [call(x, t, *contexts[name]) for name in BRANCHES]
    else:
        batched = call(torch.cat([x] * 3), t.expand(3),
                       *(torch.cat([contexts[name][part] for name in BRANCHES]) for part in (0, 1)))
        outputs = list(batched.chunk(3))
    seconds = time.perf_counter() - start
    guided = outputs[0] if len(outputs) == 1 else multi_condition(*outputs, 7.5, 2.0)
    return {"arm": arm, "seconds": seconds, "peak_rss_gib": peak_rss_gib(), "loading_peak_rss_gib": weights_gib,
            "call_peak_only": call_peak_only, "guided": guided}


def _arm_process_main(arm: str, work: Path, quick: bool, lvdm_root: Path | None) -> None:
    result = run_arm(arm, bench_config(quick), work / "weights.safetensors", torch.load(work / "inputs.pt"), lvdm_root)
    torch.save(result, work / f"{arm}.pt")


def _arm_in_own_process(arm: str, work: Path, args: argparse.Namespace) -> dict:
    process = multiprocessing.get_context("spawn").Process(
        target=_arm_process_main, args=(arm, work, args.quick, args.lvdm_root))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"bench memory: the {arm} arm failed (exit code {process.exitcode}); its error is above")
    result = torch.load(work / f"{arm}.pt")
    print(f"{arm}: {result['seconds']:.1f} s, peak {result['peak_rss_gib']:.2f} GiB during the call "
          f"(loading: {result['loading_peak_rss_gib']:.2f} GiB)", flush=True)
    return result


def bench_memory(args: argparse.Namespace) -> dict:
    config = bench_config(args.quick)
    arms = [arm for arm in ARMS if arm != "lvdm_fp32" or args.lvdm_root]
    with tempfile.TemporaryDirectory(prefix="univg_bench_memory_") as folder:
        work = Path(folder)
        torch.manual_seed(0)
        unet = UNet3D(config)
        randomize_zero_layers_(unet)
        parameters = sum(p.numel() for p in unet.parameters())
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in checkpoint_state_dict(unet).items()}, str(work / "weights.safetensors"))
        del unet
        torch.save(make_inputs(config, args.frames, args.height, args.width), work / "inputs.pt")
        results = {arm: _arm_in_own_process(arm, work, args) for arm in arms}
    reference = results.get("lvdm_fp32", results["ours_fp32"])
    ours = results["ours_bf16"]
    report = {
        "bench": "memory", "preset": PRESET, "quick": args.quick, "parameters": parameters,
        "latent": [args.frames, args.height // 8, args.width // 8], "threads": torch.get_num_threads(),
        "reference": reference["arm"],
        "arms": {arm: {key: round(value, 3) if isinstance(value, float) else value
                       for key, value in result.items() if key not in ("arm", "guided")}
                 for arm, result in results.items()},
        "peak_memory_ratio_vs_reference": ours["peak_rss_gib"] / reference["peak_rss_gib"],
        "bf16_speedup_vs_reference_fp32": reference["seconds"] / ours["seconds"],
        "three_branches_over_one_peak": ours["peak_rss_gib"] / results["ours_bf16_one"]["peak_rss_gib"],
        "max_abs_err": float((ours["guided"] - reference["guided"]).abs().max()),
        "reference_max_abs": float(reference["guided"].abs().max()),
        "relative_l2_err": float((ours["guided"] - reference["guided"]).norm() / reference["guided"].norm()),
        "ours_fp32_max_abs_err_vs_reference": float((results["ours_fp32"]["guided"] - reference["guided"]).abs().max()),
    }
    return report


def summary_line(report: dict) -> str:
    suffix = "" if report["reference"] == "lvdm_fp32" else " (no --lvdm-root: ratios against ours_fp32, not lvdm)"
    return (f"peak_memory_ratio_vs_lvdm={report['peak_memory_ratio_vs_reference']:.3f} "
            f"bf16_speedup_vs_lvdm_fp32={report['bf16_speedup_vs_reference_fp32']:.3f} "
            f"max_abs_err={report['max_abs_err']:.3g}{suffix}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="model_channels 64 instead of 320: minutes, not tens")
    parser.add_argument("--lvdm-root", type=Path, default=None,
                        help="a DynamiCrafter checkout (the folder holding lvdm/) to compare against")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=512)
