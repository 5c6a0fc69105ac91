"""ComfyUI's interrupt and progress bar, as the callbacks the core's loops take."""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.utils


def check_interrupt() -> None:
    comfy.model_management.throw_exception_if_processing_interrupted()


def progress(total: int):
    """A sampler callback: ComfyUI progress bar plus interrupt check at every step."""
    bar = comfy.utils.ProgressBar(total)

    def callback(step: int, steps: int, x: torch.Tensor, x0: torch.Tensor) -> None:
        check_interrupt()
        bar.update_absolute(step + 1, steps)

    return callback


def chunk_progress(total: int):
    """An `after_each(done, total)` for univg_core.video.in_chunks: a ComfyUI progress bar."""
    bar = comfy.utils.ProgressBar(total)
    return lambda done, count: bar.update_absolute(done, count)
