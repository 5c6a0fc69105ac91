"""How much memory a UNet call needs for its activations, found by running it on the meta device.

Every tensor an operation creates is followed while it is alive; the largest total alive at once
is the call's activation peak (the weights, which exist before the call, are not counted). On the
meta device nothing is computed or allocated, so the full-size model's peak at any video shape
takes a fraction of a second to find, and it follows the code as it is (attention path, float32
norms, the skip connections held until the decoder) rather than a formula that must be kept in step.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..configs import UNetConfig
from .unet3d import UNet3D


class LiveTensorBytes(TorchDispatchMode):
    """Inside the block: `current` bytes of the tensors created there that are still alive, and
    their `peak`. Views and in-place results share their storage and count once; tensors from
    before the block (weights, inputs) and views of them count not at all."""

    def __init__(self):
        super().__init__()
        self._alive: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def _forget_freed(self) -> None:
        for key, (reference, size) in list(self._alive.items()):
            if reference.expired():
                del self._alive[key]
                self.current -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._forget_freed()
        # a view or in-place result of an input (a weight's transpose, say) allocates nothing
        inputs = {StorageWeakRef(value.untyped_storage()).cdata
                  for value in tree_flatten((args, kwargs))[0] if isinstance(value, torch.Tensor)}
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                reference = StorageWeakRef(storage)
                if reference.cdata not in self._alive and reference.cdata not in inputs and storage.nbytes():
                    self._alive[reference.cdata] = (reference, storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


@functools.lru_cache(maxsize=4)
def _meta_unet(config: UNetConfig, dtype: torch.dtype) -> UNet3D:
    with torch.device("meta"):
        return UNet3D(config).to(dtype).eval()


@functools.lru_cache(maxsize=64)
def activation_peak_bytes(config: UNetConfig, videos: int, frames: int, height: int, width: int,
                          dtype: torch.dtype = torch.float32, context_tokens: int = 77,
                          image_tokens: Optional[int] = None) -> int:
    """The activation peak of one UNet call on `videos` videos of `frames` latent frames of
    height x width latent pixels, computing in `dtype`, with text (and image) tokens."""
    unet = _meta_unet(config, dtype)
    x = torch.empty(videos, config.in_channels, frames, height, width, device="meta", dtype=dtype)
    context = torch.empty(videos, context_tokens, config.context_dim, device="meta", dtype=dtype)
    image = None
    if image_tokens and config.image_cross_attention:
        image = torch.empty(videos, image_tokens, config.context_dim, device="meta", dtype=dtype)
    with torch.no_grad(), LiveTensorBytes() as tracker:
        unet(x, torch.zeros(videos, device="meta"), context=context, image_context=image,
             fs=torch.full((videos,), float(config.default_fs), device="meta") if config.fs_condition else None)
    return tracker.peak


# on a GPU the allocator rounds blocks up and kernels take workspaces that no op returns
PLANNING_MARGIN = 1.1


def planned_activation_bytes(config: UNetConfig, videos: int, frames: int, height: int, width: int,
                             dtype: torch.dtype = torch.float32, context_tokens: int = 77,
                             image_tokens: Optional[int] = None) -> int:
    """What to reserve for one UNet call's activations: the peak, with PLANNING_MARGIN."""
    peak = activation_peak_bytes(config, videos, frames, height, width, dtype, context_tokens, image_tokens)
    return int(peak * PLANNING_MARGIN)


def branches_that_fit(free_bytes: int, one_branch_bytes: int, branches: int) -> int:
    """How many guidance branches one UNet call can batch in `free_bytes` when each needs
    `one_branch_bytes`: all of them when they fit, else as many as fit, and never fewer than one
    (a single branch is the least a step can run)."""
    if branches < 1:
        raise ValueError(f"a guided call has at least one branch, got {branches}")
    return max(1, min(branches, int(free_bytes // max(1, one_branch_bytes))))


def measured_cpu_peak_bytes(call) -> int:
    """Run call() on the CPU and return the largest amount of memory PyTorch's allocator held at
    once during it, beyond what it held before: every allocation and free the profiler recorded
    (op outputs and the buffers ops allocate inside them), in time order."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        call()
    changes, pending = [], list(recorded.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        pending.extend(event.children)
        if event.typed[0] == _EventType.Allocation:
            changes.append((event.start_time_ns, event.typed[1].alloc_size))
    if not changes:
        raise RuntimeError("the profiler recorded no allocations: this PyTorch's profiler does not report "
                           "memory events the way measured_cpu_peak_bytes reads them")
    held = peak = 0
    for _, change in sorted(changes):
        held += change
        peak = max(peak, held)
    return peak
