"""Reading checkpoint files: .ckpt/.pt/.pth (torch zip or legacy pickle, weights_only=True)
and .safetensors, with the "state_dict" / "module" wrappers removed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .layout import CheckpointError, few
from .pickle_scan import scan_checkpoint

def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a .ckpt/.pt/.pth (torch zip or legacy pickle, loaded
    with weights_only=True) or .safetensors file, wrappers removed."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise CheckpointError(f"{name}: no such file ({path})")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < 16:
        raise CheckpointError(f"{name}: file is empty or truncated ({path.stat().st_size} bytes); expected a checkpoint")
    metadata: dict[str, str] = {}
    if path.suffix in (".safetensors", ".sft") or _looks_like_safetensors(head):
        state = _read_safetensors(path, metadata)
    else:
        state = _read_torch(path, head)
    return _unwrap(state, name), metadata


REDUCIBLE = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def is_finite(value: torch.Tensor) -> bool:
    """No NaN or inf in `value`. For the common float types by its min and max, which a NaN or an
    inf anywhere reaches: one reduction without a boolean tensor, far quicker on a CPU than
    `isfinite` (docs/developing.md has the timing)."""
    if value.numel() == 0:
        return True
    if value.dtype in REDUCIBLE:
        low, high = torch.aminmax(value)
        return bool(torch.isfinite(low) & torch.isfinite(high))
    return bool(torch.isfinite(value).all())


def non_finite_tensors(state: dict[str, torch.Tensor]) -> str:
    """'' when every floating tensor is finite, else which ones hold NaN/inf (one pass)."""
    bad = [key for key, value in state.items() if value.is_floating_point() and not is_finite(value)]
    return f"{len(bad)} of {len(state)} tensors ({few(bad)})" if bad else ""


def _looks_like_safetensors(head: bytes) -> bool:
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def _read_safetensors(path: Path, metadata: dict) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            metadata.update(reader.metadata() or {})
            return {key: reader.get_tensor(key) for key in reader.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path.name}: not a readable .safetensors file (truncated or corrupted?): {error}"
        ) from None


def _read_torch(path: Path, head: bytes) -> Any:
    is_zip = head[:4] == b"PK\x03\x04"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as error:  # the unpickler raises many kinds on garbage input
        raise CheckpointError(refusal(path, head, error)) from None


def refusal(path: Path, head: bytes, error: BaseException) -> str:
    """What the file is, read from its bytes, when torch's weights-only loader refused it
    (torch says the same for random bytes and for a pickle that would run code)."""
    name = path.name
    report = scan_checkpoint(path)
    if report.code_running:
        imports = ", ".join(sorted(set(report.code_running))[:5])
        return (f"{name}: the file holds Python objects that would run code when unpickled (it imports {imports}); "
                f"refused: only tensors are loaded from .ckpt files. Use the model's own release file or a "
                f".safetensors copy")
    if head[:4] == b"PK\x03\x04":
        return f"{name}: truncated or corrupted PyTorch checkpoint (a torch zip archive that cannot be read: {_reason(error)})"
    if not report.is_pickle:
        return (f"{name}: not a PyTorch checkpoint or safetensors file: neither a torch zip archive, a pickle nor a "
                f"safetensors header (it starts with bytes {head[:8].hex(' ')})")
    return f"{name}: not a PyTorch checkpoint (a pickle that does not hold tensors torch can read: {_reason(error)})"


def _reason(error: BaseException) -> str:
    """torch's own words for the failure, without its advice to turn the safety check off."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and "weights_only" not in line and "Check the documentation" not in line and "file an issue" not in line]
    return (lines[0] if lines else type(error).__name__)[:200]


def _unwrap(state: Any, name: str) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    elif isinstance(state, dict) and isinstance(state.get("module"), dict):
        state = state["module"]
        prefixes = {key[:16] for key in state}
        if len(prefixes) == 1:  # e.g. "_forward_module." from Lightning/DeepSpeed
            state = {key[16:]: value for key, value in state.items()}
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{name}: expected a dict of tensors (optionally under 'state_dict'), found {type(state).__name__}")
    tensors = {key: value for key, value in state.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{name}: the file holds no tensors (found keys: {few(state)})")
    return tensors
