"""`python -m univg_core.cli.bench attention`: the Triton kernels against PyTorch SDPA at the
UNet's real attention shapes.

Shapes follow the UNet at a 40x72 latent (320x576 video) and a 90x160 latent (720x1280),
batch 2 (guidance) x 16 frames, head dim 64 with 5/10/20 heads at the three levels:
spatial self-attention over H*W tokens, temporal self-attention over 24 frames at every
position, and Multi-condition Cross Attention against 77 text + 256 image tokens.

On a GPU every shape is timed (median of --repeats after --warmup, CUDA-synchronised)
for both backends, with the peak memory each call adds, and the ratio SDPA / kernel.
Without a GPU the kernels run in Triton's interpreter, which is far too slow for whole
shapes and says nothing about speed: the CPU report is correctness only, on the first
query tile (spatial, MCA) or the first 64 sequences (temporal) of each shape, against
SDPA on the same slice.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from ..models.attention import _sdpa as sdpa  # the fallback exactly as the UNet calls it (batch-chunked)

LATENTS = {"40x72": (40, 72), "90x160": (90, 160)}
LEVEL_HEADS = (5, 10, 20)  # 320/640/1280 channels in heads of 64
HEAD_DIM = 64
TEXT_TOKENS, IMAGE_TOKENS = 77, 256
BATCH, FRAMES, TEMPORAL_FRAMES = 2, 16, 24


@dataclass(frozen=True)
class Shape:
    kind: str  # spatial | temporal | mca
    latent: str
    level: int
    batch: int  # sequences (batch x frames, or batch x positions)
    heads: int
    len_q: int
    len_k: int  # for mca: the text length; the image length is IMAGE_TOKENS

    def name(self) -> str:
        kv = f"{TEXT_TOKENS}+{IMAGE_TOKENS}" if self.kind == "mca" else str(self.len_k)
        return f"{self.kind:8s} {self.latent:6s} L{self.level} b{self.batch} h{self.heads} q{self.len_q} kv{kv}"


def shapes() -> list[Shape]:
    found = []
    for latent, (height, width) in LATENTS.items():
        for level, heads in enumerate(LEVEL_HEADS):
            # each stride-2 downsampling conv (padding 1) rounds odd sizes up: 45 -> 23
            tokens = -(-height // 2**level) * -(-width // 2**level)
            found.append(Shape("spatial", latent, level, BATCH * FRAMES, heads, tokens, tokens))
            found.append(Shape("mca", latent, level, BATCH * FRAMES, heads, tokens, TEXT_TOKENS))
            found.append(Shape("temporal", latent, level, BATCH * tokens, heads, TEMPORAL_FRAMES, TEMPORAL_FRAMES))
    return found


def make_inputs(shape: Shape, device, dtype, generator, cpu_slice: bool):
    batch, len_q = shape.batch, shape.len_q
    if cpu_slice:  # the interpreter runs one program at a time: one query tile / 64 sequences
        batch, len_q = (min(batch, 64), len_q) if shape.kind == "temporal" else (1, min(len_q, 128))
    heads = 1 if cpu_slice else shape.heads

    def tensor(length):  # [b, L, h, d] storage viewed as [b, h, L, d], as the transformer makes it
        return torch.randn(batch, length, heads, HEAD_DIM, generator=generator, device=device, dtype=dtype).transpose(1, 2)

    if shape.kind == "mca":
        return (tensor(len_q), tensor(TEXT_TOKENS), tensor(TEXT_TOKENS), tensor(IMAGE_TOKENS), tensor(IMAGE_TOKENS), 1.0)
    return tensor(len_q), tensor(shape.len_k), tensor(shape.len_k)


def sdpa_reference(inputs):
    if len(inputs) == 6:
        q, kt, vt, ki, vi, scale = inputs
        return sdpa(q, kt, vt) + scale * sdpa(q, ki, vi)
    return sdpa(*inputs)


def _time_cuda(fn, warmup: int, repeats: int) -> tuple[float, float]:
    """Median seconds per call and the peak memory the call adds (GiB)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), (torch.cuda.max_memory_allocated() - base) / 2**30


def bench_attention(args) -> dict:
    cuda = args.device.startswith("cuda")
    if not cuda:
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("triton is already imported without TRITON_INTERPRET=1; run this in a fresh process")
        os.environ["TRITON_INTERPRET"] = "1"
    from ..models.kernels import launch

    device = torch.device(args.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype] if cuda else torch.float32
    generator = torch.Generator(device).manual_seed(0)
    rows = []
    for shape in shapes():
        if args.kind and shape.kind not in args.kind:
            continue
        inputs = make_inputs(shape, device, dtype, generator, cpu_slice=not cuda)
        kernel = launch.multi_condition_attention if shape.kind == "mca" else launch.self_attention
        with torch.inference_mode():
            expected = sdpa_reference(inputs)
            out = kernel(*inputs)
            row = {"shape": shape.name(), "max_error": float((out.float() - expected.float()).abs().max())}
            if cuda:
                sdpa_s, sdpa_gib = _time_cuda(lambda: sdpa_reference(inputs), args.warmup, args.repeats)
                kernel_s, kernel_gib = _time_cuda(lambda: kernel(*inputs), args.warmup, args.repeats)
                row.update(sdpa_ms=round(sdpa_s * 1e3, 3), kernel_ms=round(kernel_s * 1e3, 3),
                           speedup=round(sdpa_s / kernel_s, 3), sdpa_peak_gib=round(sdpa_gib, 3),
                           kernel_peak_gib=round(kernel_gib, 3))
            else:
                row["checked_slice"] = [int(s) for s in inputs[0].shape]
        rows.append(row)
        if args.verbose:
            print(row, file=sys.stderr, flush=True)
    return {
        "bench": "attention",
        "device": torch.cuda.get_device_name(device) if cuda else "cpu (Triton interpreter: correctness only)",
        "dtype": args.dtype if cuda else "fp32",
        "head_dim": HEAD_DIM,
        "rows": rows,
    }


def format_table(result: dict) -> str:
    lines = [f"{result['device']}, {result['dtype']}, head dim {result['head_dim']}"]
    for row in result["rows"]:
        if "speedup" in row:
            lines.append(
                f"{row['shape']:48s} sdpa {row['sdpa_ms']:9.3f} ms {row['sdpa_peak_gib']:6.2f} GiB | "
                f"triton {row['kernel_ms']:9.3f} ms {row['kernel_peak_gib']:6.2f} GiB | x{row['speedup']:.2f} "
                f"| err {row['max_error']:.1e}"
            )
        else:
            lines.append(f"{row['shape']:48s} slice {row['checked_slice']} max error {row['max_error']:.1e}")
    return "\n".join(lines)
