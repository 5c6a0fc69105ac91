"""UniVG Mini's text and image encoders: OpenCLIP ViT-H/14's text tower (SD2's text encoder) and
vision tower at full size, with fixed random weights that any machine rebuilds bit for bit.

They stay untrained (the trained UNets learn to read them), so they are never shipped: every
value comes from numpy's PCG64 raw 64-bit stream, seeded per tensor through SeedSequence (both
algorithms are fixed, unlike numpy's distribution methods), and turns into a float by exact
float32 arithmetic with a single rounding, so no maths library or CPU can change a bit.
`tower_checksum` pins the result.

The files use OpenCLIP's own layout, which ComfyUI's CLIPLoader (type stable_diffusion) and
CLIPVisionLoader read: `transformer.resblocks.N.*`, `token_embedding.weight`, ... for the text,
`visual.*` for the vision tower.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..files import ReadOnce, write_atomically

TEXT_WIDTH, TEXT_LAYERS, VOCAB, TEXT_CONTEXT = 1024, 24, 49408, 77
VISION_WIDTH, VISION_LAYERS, PATCH, VISION_TOKENS, VISION_OUTPUT = 1280, 32, 14, 257, 1024
TOWERS_SEED = 20240101
TEXT_FILE = "univg_mini_text.safetensors"
VISION_FILE = "univg_mini_vision.safetensors"


def _resblock_shapes(prefix: str, width: int, layers: int) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for i in range(layers):
        block = f"{prefix}transformer.resblocks.{i}."
        shapes.update({
            block + "ln_1.weight": (width,), block + "ln_1.bias": (width,),
            block + "attn.in_proj_weight": (3 * width, width), block + "attn.in_proj_bias": (3 * width,),
            block + "attn.out_proj.weight": (width, width), block + "attn.out_proj.bias": (width,),
            block + "ln_2.weight": (width,), block + "ln_2.bias": (width,),
            block + "mlp.c_fc.weight": (4 * width, width), block + "mlp.c_fc.bias": (4 * width,),
            block + "mlp.c_proj.weight": (width, 4 * width), block + "mlp.c_proj.bias": (width,),
        })
    return shapes


def text_tower_shapes(prefix: str = "") -> dict[str, tuple[int, ...]]:
    """OpenCLIP ViT-H/14's text transformer (SD2's text encoder); lvdm files put it under
    `cond_stage_model.model.`."""
    shapes = _resblock_shapes(prefix, TEXT_WIDTH, TEXT_LAYERS)
    shapes.update({
        prefix + "positional_embedding": (TEXT_CONTEXT, TEXT_WIDTH),
        prefix + "token_embedding.weight": (VOCAB, TEXT_WIDTH),
        prefix + "ln_final.weight": (TEXT_WIDTH,), prefix + "ln_final.bias": (TEXT_WIDTH,),
        prefix + "text_projection": (TEXT_WIDTH, TEXT_WIDTH),
    })
    return shapes


def vision_tower_shapes(prefix: str = "visual.") -> dict[str, tuple[int, ...]]:
    """OpenCLIP ViT-H/14's vision transformer; lvdm files put it under `embedder.model.visual.`."""
    shapes = _resblock_shapes(prefix, VISION_WIDTH, VISION_LAYERS)
    shapes.update({
        prefix + "class_embedding": (VISION_WIDTH,),
        prefix + "positional_embedding": (VISION_TOKENS, VISION_WIDTH),
        prefix + "conv1.weight": (VISION_WIDTH, 3, PATCH, PATCH),
        prefix + "ln_pre.weight": (VISION_WIDTH,), prefix + "ln_pre.bias": (VISION_WIDTH,),
        prefix + "ln_post.weight": (VISION_WIDTH,), prefix + "ln_post.bias": (VISION_WIDTH,),
        prefix + "proj": (VISION_WIDTH, VISION_OUTPUT),
    })
    return shapes


def _is_norm(name: str) -> bool:
    return any(f"{norm}." in name for norm in ("ln_1", "ln_2", "ln_final", "ln_pre", "ln_post"))


def init_std(name: str, shape: tuple[int, ...], layers: int) -> float:
    """OpenCLIP's initialisation scales: embeddings 0.02 (text positions 0.01), input
    projections width^-0.5, the MLP's first layer (2 width)^-0.5, and the two projections
    back into the residual stream a further (2 layers)^-0.5 smaller, so the stream keeps
    the token identities."""
    if name.endswith(("token_embedding.weight", "class_embedding")) or "visual." in name and "positional" in name:
        return 0.02
    if name.endswith("positional_embedding"):
        return 0.01
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    if name.endswith("c_fc.weight"):
        return (2 * fan_in) ** -0.5
    if name.endswith(("out_proj.weight", "c_proj.weight")):
        return fan_in**-0.5 * (2 * layers) ** -0.5
    return fan_in**-0.5


def _seed_for(seed: int, name: str) -> np.random.SeedSequence:
    digest = hashlib.sha256(name.encode()).digest()
    return np.random.SeedSequence([seed, int.from_bytes(digest[:8], "little")])


def uniform_with_std(count: int, std: float, seed_sequence: np.random.SeedSequence) -> np.ndarray:
    """`count` float32 values uniform in [-std sqrt(3), std sqrt(3)) (standard deviation `std`):
    the top 24 bits of each raw PCG64 output give an exact float32 in [-1, 1), and one
    multiplication rounds it."""
    raw = np.random.PCG64(seed_sequence).random_raw(count)
    unit = (raw >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-23) - np.float32(1.0)
    return unit * np.float32(std * 3**0.5)


def build_tower(shapes: dict[str, tuple[int, ...]], layers: int, seed: int = TOWERS_SEED,
                dtype: torch.dtype = torch.float16, progress=None) -> dict[str, torch.Tensor]:
    """The weights for `shapes`: layer-norm weights 1, biases 0, everything else uniform with
    OpenCLIP's initialisation scale, made in float32 and rounded once to `dtype`. `progress(done,
    total)`, when given, is called after each tensor (in values made)."""
    tensors, total, done = {}, sum(int(np.prod(shape)) for shape in shapes.values()), 0
    for name, shape in shapes.items():
        if _is_norm(name) and name.endswith("weight"):
            tensors[name] = torch.ones(shape, dtype=dtype)
        elif name.endswith("bias") or _is_norm(name):
            tensors[name] = torch.zeros(shape, dtype=dtype)
        else:
            values = uniform_with_std(int(np.prod(shape)), init_std(name, shape, layers), _seed_for(seed, name))
            tensors[name] = torch.from_numpy(values.reshape(shape)).to(dtype)
        done += int(np.prod(shape))
        if progress is not None:
            progress(done, total)
    return tensors


def text_tower(prefix: str = "", seed: int = TOWERS_SEED, progress=None) -> dict[str, torch.Tensor]:
    return build_tower(text_tower_shapes(prefix), TEXT_LAYERS, seed, progress=progress)


def vision_tower(prefix: str = "visual.", seed: int = TOWERS_SEED, progress=None) -> dict[str, torch.Tensor]:
    return build_tower(vision_tower_shapes(prefix), VISION_LAYERS, seed, progress=progress)


def _builder(name: str):
    """The tower file's builder and its tensors' shapes (looked up when called)."""
    if name not in (TEXT_FILE, VISION_FILE):
        raise ValueError(f"not a UniVG Mini tower: {name!r} (expected {TEXT_FILE} or {VISION_FILE})")
    return (text_tower, text_tower_shapes) if name == TEXT_FILE else (vision_tower, vision_tower_shapes)


def tower_file_bytes(name: str) -> int:
    """About what the tower's file takes on disk (fp16 tensors; the header is a few kB)."""
    return 2 * sum(int(np.prod(shape)) for shape in _builder(name)[1]().values())


def tower_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, shape, dtype and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}{list(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# tower_checksum of what TOWERS_SEED builds (tests/test_mini_towers.py rebuilds and checks them):
# a file already in place is verified against these without rebuilding the towers
PINNED_CHECKSUMS = {
    TEXT_FILE: "fd0343f0f87f30b60e7b9cebb4cfa5fa75b6a643ae978a15abc860d8359916a5",
    VISION_FILE: "70c0c325f3738bd4bb1e5ecbac0c94dcad0b31b69b52fa0303a7ca75db3fb704",
}


# where the towers are built once; every models folder gets a hard link to these files
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "mini" / "towers"


def write_towers(text_folder: str | Path, vision_folder: str | Path, seed: int = TOWERS_SEED,
                 cache: str | Path | None = DEFAULT_CACHE) -> tuple[Path, Path]:
    """Put both files where ComfyUI's loaders look (models/text_encoders, models/clip_vision):
    `write_tower` for each."""
    return (write_tower(text_folder, TEXT_FILE, seed, cache), write_tower(vision_folder, VISION_FILE, seed, cache))


def write_tower(folder: str | Path, name: str, seed: int = TOWERS_SEED, cache: str | Path | None = DEFAULT_CACHE,
                progress=None) -> Path:
    """Put the tower `name` (TEXT_FILE or VISION_FILE) into `folder`.

    It is built once into `cache` and hard-linked from there (a copy only where the two folders
    are on different file systems), so each models folder costs no disk: the pair is about 2 GB.
    The cache is checked against the pinned checksums and rebuilt when it differs; a folder's
    file that is already the cache's is left alone, anything else there is replaced by a link.
    `cache=None` writes the file directly (kept when it holds the same weights). `progress(done,
    total)` follows the build (not called when the file is already there)."""
    build = _builder(name)[0]
    path = Path(folder) / name
    if seed == TOWERS_SEED:
        expected, make = PINNED_CHECKSUMS[name], lambda: build(seed=seed, progress=progress)
    else:  # built once: for its checksum, and to write if needed
        tensors = build(seed=seed, progress=progress)
        expected, make = tower_checksum(tensors), lambda: tensors
    source = path if cache is None else Path(cache) / name
    _write_if_changed(source, make, seed, expected)
    if not (path.is_file() and path.samefile(source)):
        _link_or_copy(source, path)
    return path


def _write_if_changed(path: Path, make, seed: int, expected: str) -> None:
    from safetensors.torch import save_file

    if path.is_file() and _file_checksum(path) == expected:
        return
    metadata = {"univg.mini": "fixed random tower", "univg.seed": str(seed)}
    write_atomically(path, lambda partial: save_file(make(), str(partial), metadata=metadata))


def _link_or_copy(source: Path, target: Path) -> None:
    def link_or_copy(partial: Path) -> None:
        try:
            os.link(source, partial)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, partial)

    write_atomically(target, link_or_copy)


# a tower file is read for its checksum once per process while it stays the same file (every
# render through the loader node, every training run, asks for both towers)
_CHECKSUMS = ReadOnce()


def _file_checksum(path: Path) -> str | None:
    from safetensors.torch import load_file

    def checksum() -> str | None:
        try:
            return tower_checksum(load_file(str(path)))
        except Exception:  # unreadable or truncated: rewrite it
            return None

    return _CHECKSUMS.value([path], checksum)
