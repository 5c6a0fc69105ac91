"""Ahead-of-time compilation of every kernel variant for real GPU targets, on any machine.

The interpreter runs the kernels' maths on the CPU but never meets the GPU compiler
(layouts, shared memory, register limits, tile shapes below 16). `compile_all` builds
each variant the launcher can pick (kernel x dtype x padded head dim x tile config) for
sm_80 (A100) and sm_90 (H100) with `triton.compile(..., target=GPUTarget)`, so code only
the GPU compiler rejects fails here, on a CPU machine.

    python -m univg_core.cli.build_kernels      # all variants, sm_80 and sm_90
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import launch
from .attention_kernels import multi_condition_attention_kernel, self_attention_kernel

ARCHES = (80, 90)
HEAD_DIMS = (40, 64, 80, 128)
# (len_q, len_k) pairs that reach every branch of launch.tile_config
SEQUENCE_SHAPES = ((8, 8), (16, 16), (24, 24), (64, 64), (2880, 2880), (2880, 333))
TRITON_TYPES = {torch.float16: "fp16", torch.bfloat16: "bf16"}  # launch.GPU_DTYPES
KERNELS = {"self_attention": self_attention_kernel, "multi_condition_attention": multi_condition_attention_kernel}


@dataclass(frozen=True)
class Variant:
    kernel: str
    dtype: torch.dtype
    tiles: launch.TileConfig

    def describe(self) -> str:
        t = self.tiles
        return (
            f"{self.kernel} {TRITON_TYPES[self.dtype]} d{t.block_d} "
            f"{t.block_m}x{t.block_n} warps={t.num_warps} stages={t.num_stages}"
        )


def variants() -> list[Variant]:
    """Every distinct (kernel, dtype, tiles) the launcher can choose on a GPU."""
    found: dict[tuple, Variant] = {}
    for dtype in launch.GPU_DTYPES:
        for head_dim in HEAD_DIMS:
            for len_q, len_k in SEQUENCE_SHAPES:
                tiles = launch.tile_config(len_q, len_k, head_dim)
                found.setdefault(("self_attention", dtype, tiles), Variant("self_attention", dtype, tiles))
            tiles = launch.long_tile_config(head_dim)
            found.setdefault(("mca", dtype, tiles), Variant("multi_condition_attention", dtype, tiles))
    return list(found.values())


def _signature(variant: Variant) -> tuple[dict, dict]:
    fn = KERNELS[variant.kernel]
    pointer = "*" + TRITON_TYPES[variant.dtype]
    constexprs = {
        "BLOCK_M": variant.tiles.block_m,
        "BLOCK_N": variant.tiles.block_n,
        "BLOCK_D": variant.tiles.block_d,
        "DOT_PRECISION": launch.dot_precision(variant.dtype),
        "UPCAST": False,
    }
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "ImageScale":
            signature[name] = "*fp32"
        elif name[0].isupper():
            signature[name] = pointer
        elif name == "qk_scale":
            signature[name] = "fp32"
        else:
            signature[name] = "i32"  # strides, heads, lengths, head_dim
    return signature, constexprs


def compile_variant(variant: Variant, arch: int):
    signature, constexprs = _signature(variant)
    source = ASTSource(fn=KERNELS[variant.kernel], signature=signature, constexprs=constexprs)
    options = {"num_warps": variant.tiles.num_warps, "num_stages": variant.tiles.num_stages}
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def _compile_timed(index: int, arch: int) -> tuple[float, int]:
    """Compile variants()[index] for `arch`: (seconds, shared memory bytes). A worker's job."""
    start = time.perf_counter()
    kernel = compile_variant(variants()[index], arch)
    return time.perf_counter() - start, int(kernel.metadata.shared)


def compile_all(arches=ARCHES, report=print, workers: int | None = None) -> list[tuple[Variant, int, float, int]]:
    """Compile every variant for every arch; returns (variant, arch, seconds, shared memory bytes).
    The builds run in `workers` processes (default: one per CPU core; 1 compiles here, in order)."""
    jobs = [(index, arch) for index in range(len(variants())) for arch in arches]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        timed = [_compile_timed(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            timed = list(pool.map(_compile_timed, *zip(*jobs)))
    results = []
    for (index, arch), (seconds, shared) in zip(jobs, timed):
        variant = variants()[index]
        results.append((variant, arch, seconds, shared))
        report(f"sm_{arch} {variant.describe()}: {seconds:.1f} s, shared memory {shared} B")
    return results
