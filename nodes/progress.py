"""ComfyUI's interrupt and progress bar, as the callbacks the core's loops take."""

from __future__ import annotations

import comfy.model_management
import comfy.utils


def check_interrupt() -> None:
    comfy.model_management.throw_exception_if_processing_interrupted()


def chunk_progress(total: int):
    """An `after_each(done, total)` for univg_core.video.in_chunks: a ComfyUI progress bar."""
    bar = comfy.utils.ProgressBar(total)
    return lambda done, count: bar.update_absolute(done, count)
