"""Encode every clip once and keep the result on disk, so epochs never re-run the VAE or CLIP.

Per clip: the VAE latents of every decoded frame (the SD VAE is per-frame, so any window of
them is the encoding of that window), for super-resolution also the latents of the degraded
clip, the caption's text embedding, and CLIP image tokens of the frames where a training
window may start (every `window_stride`-th), and with --object-weight each latent cell's share of
object pixels. Plus `null.pt`: the encodings of the empty
prompt and of the mid-grey null image that conditioning dropout swaps in, matching the null
conditions of inference. A cache file is named by a hash of the clip file (path, size,
modification time), the settings and the encoders, so a changed clip or model is re-encoded."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..checkpoints import LoadedCheckpoint
from ..files import ReadOnce, write_atomically
from .clip_towers import TextTower, VisionTower, load_text_tower, load_vision_tower, tokenize
from .vae_encoder import load_vae_encoder
from .data import ClipRecord, DataError, read_video
from .degrade import degrade, halved
from .object_weight import object_share

NULL_FILE = "null.pt"


class Encoders:
    """The VAE, text and vision towers that encode clips for training, each given built or as a
    function that builds it when first used: a run whose clips and null encodings are all cached,
    by encoders whose fingerprint this process already knows, builds none."""

    def __init__(self, vae, text, vision=None, sources: Optional[tuple] = None, text_width=None):
        self._parts = {"vae": vae, "text": text, "vision": vision}  # VAEEncoder or TinyVAEEncoder, TextTower, VisionTower
        self.caption_memo: dict = {}
        self.sources = sources  # the files the three were read from, with how (see encoders_from_checkpoint)
        self._text_width = text_width  # a function that reads it without building the tower, or None

    def _part(self, name: str):
        part = self._parts[name]
        if part is not None and not isinstance(part, torch.nn.Module):
            part = self._parts[name] = part()
        return part

    @property
    def vae(self) -> torch.nn.Module:
        return self._part("vae")

    @property
    def text(self) -> TextTower:
        return self._part("text")

    @property
    def vision(self) -> Optional[VisionTower]:
        return self._part("vision")

    @property
    def has_vision(self) -> bool:
        return self._parts["vision"] is not None

    def text_width(self) -> int:
        width = self._text_width() if self._text_width is not None else None
        return width if width is not None else self.text.config.width

    def fingerprint(self) -> str:
        if self.sources is None:
            return self._hash_weights()
        files, how = self.sources
        return _FINGERPRINTS.value(files, self._hash_weights, *how)

    def _hash_weights(self) -> str:
        digest = hashlib.sha1(b"clip image preprocessing: original")  # caches made before it was the default differ
        if hasattr(self.vae, "scale_factor"):  # the latents are stored scaled
            digest.update(f"scale {self.vae.scale_factor}".encode())
        for module in (self.vae, self.text, self.vision):
            if module is None:
                continue
            for name, tensor in sorted(module.state_dict().items()):
                # the bytes, not a float sum: a sum's last digits depend on the thread count
                digest.update(f"{name}{list(tensor.shape)}{tensor.dtype}".encode())
                digest.update(tensor.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]


# the encoders' weights are hashed once per process for the same files (a study trains many arms on them)
_FINGERPRINTS = ReadOnce()


def _component_file(path: str, what: str, prefix: str = "") -> dict:
    """A VAE, text or vision tower in its own file, in the layout ComfyUI's VAELoader,
    CLIPLoader and CLIPVisionLoader read, keyed as inside an lvdm checkpoint's prefix."""
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except Exception as error:
        raise DataError(f"{path}: cannot read the {what} file ({error})") from None
    return {prefix + key: value for key, value in state.items()}


def _text_width_in_file(path: str) -> Optional[int]:
    """The token width a text tower file gives, from its header; None when the file has no
    positional_embedding (building the tower then says what is wrong)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            if "positional_embedding" not in handle.keys():
                return None
            return int(handle.get_slice("positional_embedding").get_shape()[1])
    except Exception as error:  # noqa: BLE001 - safetensors raises several kinds on a damaged file
        raise DataError(f"{path}: cannot read the text encoder file ({error})") from None


def encoders_from_checkpoint(loaded: LoadedCheckpoint, need_vision: bool, device="cpu", dtype=torch.float32,
                             text_file: Optional[str] = None, vision_file: Optional[str] = None,
                             vae_file: Optional[str] = None) -> Encoders:
    """The checkpoint's own VAE, text and vision towers; `vae_file` / `text_file` / `vision_file`
    supply parts that live in their own files (UniVG Mini's), in place of the checkpoint's. Each is
    read and built when first used."""
    name = loaded.path
    for file, what in ((vae_file, "VAE"), (text_file, "text encoder"), (vision_file if need_vision else None, "CLIP vision")):
        if file and not Path(file).is_file():
            raise DataError(f"{file}: cannot read the {what} file (no such file)")
    if not vae_file and not loaded.vae_state_dict:
        raise DataError(
            f"{name}: no VAE (first_stage_model.*) in the file; training encodes clips with the checkpoint's own VAE "
            "(or give its own file with --vae)"
        )
    if not text_file and not loaded.text_encoder_state_dict:
        raise DataError(
            f"{name}: no text encoder (cond_stage_model.*) in the file; training needs it for the captions "
            "(or give its own file with --text-encoder)"
        )
    if need_vision and not vision_file and not loaded.image_encoder_state_dict:
        raise DataError(
            f"{name}: the model has an image branch but the file has no CLIP vision tower (embedder.*) to make its "
            "image tokens (or give its own file with --image-encoder)"
        )

    def vae():
        state = _component_file(vae_file, "VAE") if vae_file else loaded.vae_state_dict
        return load_vae_encoder(state, loaded.config.schedule.scale_factor, dtype, device)

    def text():
        state = _component_file(text_file, "text encoder", "model.") if text_file else loaded.text_encoder_state_dict
        return load_text_tower(state, dtype, device)

    def vision():
        state = _component_file(vision_file, "CLIP vision", "model.") if vision_file else loaded.image_encoder_state_dict
        return load_vision_tower(state, dtype, device)

    parts = (vae_file, text_file) + ((vision_file,) if need_vision else ())
    files = [part or loaded.path for part in parts]  # a part without its own file is read from the checkpoint
    return Encoders(vae=vae, text=text, vision=vision if need_vision else None,
                    sources=(files, (str(dtype), *(part is None for part in parts))),
                    text_width=(lambda: _text_width_in_file(text_file)) if text_file else None)


@dataclass(frozen=True)
class CacheSpec:
    height: int
    width: int
    frames: int  # the training window; shorter clips are an error
    max_frames: int = 64  # decoded per clip
    frame_stride: int = 1
    window_stride: int = 4
    lowres: bool = False
    image_tokens: bool = False
    seed: int = 0
    object_shares: bool = False  # each latent cell's share of object pixels, for --object-weight
    clean_share: float = 0.0  # super-resolution: the share of clips whose low-resolution copy is only halved


def _key_fields(spec: CacheSpec) -> dict:
    fields = asdict(spec)
    if not spec.object_shares:  # caches made before the option keep their names
        del fields["object_shares"]
    if not spec.clean_share:
        del fields["clean_share"]
    return fields


def cache_key(record: ClipRecord, spec: CacheSpec, fingerprint: str) -> str:
    stat = record.path.stat()
    blob = json.dumps([str(record.path.resolve()), stat.st_size, stat.st_mtime_ns, record.caption, _key_fields(spec), fingerprint])
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def window_starts(length: int, frames: int, stride: int) -> list[int]:
    return list(range(0, length - frames + 1, stride))


def _encode_latents(vae: torch.nn.Module, video: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """[T, 3, H, W] -> [C, T, h, w] (fp16 on disk)."""
    device = next(vae.parameters()).device
    parts = [vae(video[i : i + chunk].to(device)).cpu() for i in range(0, video.shape[0], chunk)]
    return torch.cat(parts).transpose(0, 1).half().contiguous()


def _save(obj: dict, path: Path) -> None:
    write_atomically(path, lambda partial: torch.save(obj, partial))  # never a half-written cache file


def _caption_tokens(encoders: Encoders, caption: str) -> torch.Tensor:
    # datasets repeat captions (UniVG Mini's world has 225): each is encoded once per build
    if caption not in encoders.caption_memo:
        device = encoders.text.positional_embedding.device
        encoders.caption_memo[caption] = encoders.text(tokenize([caption]).to(device))[0].half().cpu()
    return encoders.caption_memo[caption]


def encode_clip(record: ClipRecord, encoders: Encoders, spec: CacheSpec, key: str) -> dict:
    video, rate = read_video(record.path, spec.height, spec.width, spec.max_frames, spec.frame_stride)
    if video.shape[0] < spec.frames:
        raise DataError(f"{record.path}: {video.shape[0]} frames (stride {spec.frame_stride}), fewer than the {spec.frames} asked")
    device = encoders.text.positional_embedding.device
    entry = {
        "source": str(record.path),
        "fps": rate,
        "latents": _encode_latents(encoders.vae, video),
        "text": _caption_tokens(encoders, record.caption),
    }
    if spec.lowres:
        generator = torch.Generator().manual_seed(int(key, 16) % (2**63))
        clean = spec.clean_share and float(torch.rand((), generator=generator)) < spec.clean_share
        entry["lowres"] = _encode_latents(encoders.vae, halved(video) if clean else degrade(video, generator))
    if spec.object_shares:
        entry["object"] = object_share(video, *entry["latents"].shape[-2:]).half()
    starts = window_starts(video.shape[0], spec.frames, spec.window_stride)
    entry["starts"] = torch.tensor(starts)
    if spec.image_tokens:
        firsts = (video[starts] + 1) / 2
        entry["image"] = torch.cat([encoders.vision(firsts[i : i + 4].to(device)).cpu() for i in range(0, len(starts), 4)]).half()
    return entry


def build_cache(
    records: list[ClipRecord],
    encoders: Encoders,
    spec: CacheSpec,
    cache_dir: str | Path,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Encode what is not cached yet; every clip is checked first and all problems are reported
    together, before any training step."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = encoders.fingerprint()
    files, problems = [], []
    for number, record in enumerate(records, 1):
        key = cache_key(record, spec, fingerprint)
        path = cache_dir / f"{key}.pt"
        if not path.is_file():
            try:
                _save(encode_clip(record, encoders, spec, key), path)
            except DataError as error:
                problems.append(str(error))
                continue
            log(f"encoded {number}/{len(records)}: {record.path.name}")
        files.append(path)
    if problems:
        raise DataError(f"{len(problems)} of {len(records)} clips are unusable:\n  " + "\n  ".join(problems))
    null_path = cache_dir / NULL_FILE
    null_key = f"{fingerprint} {spec.height}x{spec.width} image {encoders.has_vision}"
    if null_path.is_file() and torch.load(null_path, map_location="cpu", weights_only=True).get("key") == null_key:
        return files  # made by the same encoders for the same frame size
    device = encoders.text.positional_embedding.device
    null = {"key": null_key, "text": encoders.text(tokenize([""]).to(device))[0].half().cpu()}
    if encoders.has_vision:
        grey = torch.full((1, 3, spec.height, spec.width), 0.5, device=device)
        null["image"] = encoders.vision(grey)[0].half().cpu()
    _save(null, null_path)
    return files


class CachedClips:
    """Training windows over cached clips: item i is (clip, start frame)."""

    def __init__(self, files: list[Path], frames: int):
        self.files = list(files)
        self.frames = frames
        self.windows: list[tuple[int, int, int]] = []  # (file index, start index in 'starts', start frame)
        for index, path in enumerate(self.files):
            starts = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["starts"].tolist()
            self.windows.extend((index, position, start) for position, start in enumerate(starts))
        if not self.windows:
            raise DataError(f"no training windows of {frames} frames in the cached clips")
        self.null = torch.load(Path(self.files[0]).parent / NULL_FILE, map_location="cpu", weights_only=True)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        file_index, position, start = self.windows[index]
        entry = torch.load(self.files[file_index], map_location="cpu", weights_only=True, mmap=True)
        window = slice(start, start + self.frames)
        item = {"latents": entry["latents"][:, window].float(), "text": entry["text"].float(), "fps": entry["fps"]}
        if "lowres" in entry:
            item["lowres"] = entry["lowres"][:, window].float()
        if "image" in entry:
            item["image"] = entry["image"][position].float()
        if "object" in entry:
            item["object"] = entry["object"][window].float()
        return item
