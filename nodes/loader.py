"""UniVG Checkpoint Loader: one file -> MODEL, and CLIP / VAE / CLIP_VISION when the file
holds them (the lvdm checkpoints carry their VAE, OpenCLIP text tower and, for the
image models, the OpenCLIP vision tower)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import comfy.clip_vision
import comfy.model_management
import comfy.sd
import folder_paths
import torch
from safetensors import SafetensorError

from ..univg_core.checkpoints import (
    COMPANIONS_KEY,
    CheckpointError,
    load_checkpoint,
    non_finite_tensors,
    read_state_dict,
    split_prefix,
)
from ..univg_core.files import existing_parent, file_identity
from ..univg_core.mini import models as mini_models
from ..univg_core.mini import towers as mini_towers
from ..univg_core.models.tiny_vae import ShuffleTinyVAE, make_decoder
from .conditioning import SOURCE
from .model import DTYPE_CHOICES, host_operations, wrap_in_patcher

log = logging.getLogger("univg")
FOLDER = "univg"
OPEN_CHECKPOINTS = (
    "VideoCrafter2 (model.ckpt, T2V 512), VideoCrafter1 (i2v_512_v1, t2v_1024_v1), "
    "DynamiCrafter (256/512/1024 model.ckpt; DynamiCrafter-512-Interp's model.ckpt as dynamicrafter_512_interp.ckpt "
    "for the interpolation workflow) or a UniVG .safetensors from the BGN fine-tuning"
)


def register_folder() -> None:
    """models/univg, and after it the pack's own UniVG Mini files (listed without installing
    anything; a copy in models/univg is found first)."""
    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = (
            [os.path.join(folder_paths.models_dir, FOLDER)],
            set(folder_paths.supported_pt_extensions),
        )
    paths = folder_paths.folder_names_and_paths[FOLDER][0]
    if str(mini_models.WEIGHTS_DIR) not in paths:
        paths.append(str(mini_models.WEIGHTS_DIR))


def checkpoint_names() -> list[str]:
    names = set(folder_paths.get_filename_list(FOLDER))
    names.update(folder_paths.get_filename_list("checkpoints"))
    names.difference_update(mini_models.VAE_FILES)  # the Mini's VAEs, beside its UNets: not checkpoints
    return sorted(names)


def resolve(name: str) -> str:
    for folder in (FOLDER, "checkpoints"):
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path
    where = os.path.join(folder_paths.models_dir, FOLDER)
    raise FileNotFoundError(f"checkpoint {name!r} not found; put it in {where} ({OPEN_CHECKPOINTS})")


def build_clip(text_state: dict):
    """`cond_stage_model.model.*`, the OpenCLIP ViT-H text tower (SD2's text encoder), as a ComfyUI CLIP."""
    text = split_prefix(text_state, "model.")
    if not text:
        return None
    return comfy.sd.load_text_encoder_state_dicts(
        [text],
        embedding_directory=folder_paths.get_folder_paths("embeddings"),
        clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION,
    )


# what ComfyUI's TAESD holds beside the layers; UniVG Mini's VAE file leaves them at their identity
TAESD_IDENTITY = {"vae_scale": 1.0, "vae_shift": 0.0}


SHUFFLE_PREFIX = "shuffle_decoder."


def _taesd_stand_in(shuffle_state: dict) -> dict:
    """TAESD-layout decoder keys from a shuffle decoder's (its shuffle convolution left out), so
    ComfyUI builds its TAESD class; the decoder is then replaced by the real one."""
    shuffle_index = ShuffleTinyVAE.SHUFFLE
    state = {}
    for key, value in shuffle_state.items():
        index, rest = key.split(".", 1)
        if int(index) != shuffle_index:
            state[f"taesd_decoder.{int(index) - (int(index) > shuffle_index + 1)}.{rest}"] = value
    return state


def _swap_in_shuffle_decoder(vae, shuffle_state: dict) -> None:
    model = vae.first_stage_model
    decoder = make_decoder(model.taesd_decoder[1].in_channels, shuffle_last=True)
    decoder.load_state_dict(shuffle_state)
    model.taesd_decoder = decoder.to(device=next(model.parameters()).device, dtype=vae.vae_dtype).eval()
    vae.patcher.size = comfy.model_management.module_size(model)  # the patcher's cached size is the old decoder's
    if hasattr(vae, "size"):
        vae.size = None


def build_vae(vae_state: dict):
    """A ComfyUI VAE: the Mini VAE (TAESD layout) as ComfyUI's own TAESD; the super-resolution VAE,
    whose decoder ends in a pixel shuffle ComfyUI has no class for, as a TAESD whose decoder is it."""
    state = dict(vae_state)
    shuffle = {key[len(SHUFFLE_PREFIX):]: value for key, value in state.items() if key.startswith(SHUFFLE_PREFIX)}
    if shuffle:
        state = {key: value for key, value in state.items() if not key.startswith(SHUFFLE_PREFIX)}
        state.update(_taesd_stand_in(shuffle))
    if "taesd_decoder.1.weight" in state:
        for key, value in TAESD_IDENTITY.items():
            state.setdefault(key, torch.tensor(value))
    vae = comfy.sd.VAE(sd=state)
    if shuffle:
        _swap_in_shuffle_decoder(vae, shuffle)
    return vae


def build_clip_vision(image_encoder_state: dict):
    """`embedder.model.visual.*` (OpenCLIP ViT-H/14 vision tower) as a ComfyUI CLIP_VISION."""
    visual = {key: value for key, value in split_prefix(image_encoder_state, "model.").items() if key.startswith("visual.")}
    if not visual:
        return None
    return comfy.clip_vision.load_clipvision_from_sd(visual, prefix="visual.", convert_keys=True)


MINI_REBUILD = "`python -m univg_core.cli.install_mini --models <ComfyUI>/models` from the UniVG pack rebuilds it"


# a file's parts kept in ComfyUI's own model folders (UniVG Mini's VAE and towers): part -> folder
COMPANION_FOLDERS = {"vae": "vae", "text_encoder": "text_encoders", "clip_vision": "clip_vision"}
MINI_TOWERS = {"text_encoder": mini_towers.TEXT_FILE, "clip_vision": mini_towers.VISION_FILE}


def with_source(clip_vision, source):
    """The CLIP_VISION (or None: ComfyUI recognised no vision model) with the identity of the file
    its weights came from, when known: UniVG Multi-Conditioning keeps its encodings by it."""
    if clip_vision is not None and source is not None:
        setattr(clip_vision, SOURCE, source)
    return clip_vision


def load_companions(metadata: dict, ckpt_name: str, want_vision: bool) -> dict:
    """The parts the file names in its `univg.companions` metadata, each loaded by ComfyUI's
    own loader from its model folder (UniVG Mini's: from the pack, or built on first use)."""
    named = json.loads(metadata.get(COMPANIONS_KEY, "{}"))
    parts = {}
    for part, file_name in sorted(named.items(), key=lambda item: item[0] != "vae"):  # the small VAE first
        if part not in COMPANION_FOLDERS or (part == "clip_vision" and not want_vision):
            continue
        path = find_companion(part, file_name, ckpt_name)
        if part == "vae":
            parts[part] = build_vae(read_companion(path, part, ckpt_name))
        elif part == "text_encoder":
            check_readable(path, part, ckpt_name)
            parts[part] = comfy.sd.load_clip(
                [path], embedding_directory=folder_paths.get_folder_paths("embeddings"),
                clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION,
            )
        else:
            check_readable(path, part, ckpt_name)
            source = file_identity(path)
            parts[part] = with_source(comfy.clip_vision.load(path), source)
    return parts


def find_companion(part: str, file_name: str, ckpt_name: str) -> str:
    """The companion's path in its ComfyUI folder; else UniVG Mini's VAEs from the pack, or its
    tower built from its seed into that folder; else an error naming the file and where it goes."""
    folder = COMPANION_FOLDERS[part]
    path = folder_paths.get_full_path(folder, file_name)
    if path is not None:
        return path
    shipped = mini_models.WEIGHTS_DIR / file_name
    if part == "vae" and file_name in mini_models.VAE_FILES and shipped.is_file():
        return str(shipped)
    if MINI_TOWERS.get(part) == file_name:
        return build_mini_tower(file_name, Path(folder_paths.get_folder_paths(folder)[0]))
    raise FileNotFoundError(
        f"{ckpt_name} needs its {part.replace('_', ' ')} {file_name!r} in "
        f"{os.path.join(folder_paths.models_dir, folder)}; for UniVG Mini, {MINI_REBUILD}"
    )


def build_mini_tower(file_name: str, folder: Path) -> str:
    """UniVG Mini's fixed random tower, rebuilt from its seed (nothing downloaded) into the pack's
    cache and linked into `folder`, with ComfyUI's progress bar; interruptible."""
    import comfy.model_management
    import comfy.utils

    needed = mini_towers.tower_file_bytes(file_name)
    cache = mini_towers.DEFAULT_CACHE

    def no_room(detail: str) -> OSError:
        return OSError(f"UniVG Mini needs its tower {file_name} ({needed / 1e9:.1f} GB), built from its seed into "
                       f"{cache} and linked into {folder}, but {detail}; free some space, or {MINI_REBUILD}")

    if not (cache / file_name).is_file():
        free = shutil.disk_usage(existing_parent(cache)).free
        if free < needed * 1.05:
            raise no_room(f"only {free / 1e9:.1f} GB are free at {existing_parent(cache)}")
    log.info("UniVG Mini: building %s from its seed (%.1f GB, nothing downloaded) ...", file_name, needed / 1e9)
    bar = comfy.utils.ProgressBar(100)

    def progress(done: int, total: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(int(100 * done / total), 100)

    try:
        return str(mini_towers.write_tower(folder, file_name, cache=cache, progress=progress))
    except (OSError, SafetensorError) as error:
        raise no_room(f"writing it failed: {error}") from None


def read_companion(path: str, part: str, ckpt_name: str) -> dict:
    """A companion file's tensors, or an error that names the file, its role and the remedy."""
    role = f"the {part.replace('_', ' ')} of {ckpt_name}"
    try:
        state, _ = read_state_dict(path)
    except CheckpointError as error:
        raise ValueError(f"UniVG Checkpoint Loader: {role}: {error}; {MINI_REBUILD}") from None
    damaged = non_finite_tensors(state)
    if damaged:
        raise ValueError(f"UniVG Checkpoint Loader: {role}, {os.path.basename(path)}, is damaged: "
                         f"{damaged} hold NaN/inf; {MINI_REBUILD}")
    return state


def check_readable(path: str, part: str, ckpt_name: str) -> None:
    """A tower's header and size agree (GB files: not read whole here; ComfyUI's loader reads them)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as reader:
            reader.keys()
    except Exception as error:  # noqa: BLE001 - safetensors raises several kinds on a damaged file
        raise ValueError(f"UniVG Checkpoint Loader: the {part.replace('_', ' ')} of {ckpt_name}: "
                         f"{os.path.basename(path)}: not a readable .safetensors file (truncated or corrupted?): "
                         f"{error}; {MINI_REBUILD}") from None


class UniVGCheckpointLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "ckpt_name": (checkpoint_names(), {"tooltip": (
                    f"from models/{FOLDER} or models/checkpoints: {OPEN_CHECKPOINTS}; univg_mini_* are UniVG Mini, "
                    "shipped in the pack (64x64, 8 frames, renders on a CPU): on first use its text and vision "
                    "towers are built from their seed into models/text_encoders and models/clip_vision (about "
                    "20 s and 2 GB, nothing downloaded)")}),
                "dtype": (DTYPE_CHOICES, {
                    "default": "auto",
                    "tooltip": "the UNet's weight type; auto: bf16 on a GPU that has it, else fp16, fp32 on the CPU; "
                               "fp8: weights stored in fp8 (half of fp16's memory), computed as auto"}),
            }
        }

    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "CLIP_VISION")
    RETURN_NAMES = ("model", "clip", "vae", "clip_vision")
    OUTPUT_TOOLTIPS = (
        "the video UNet (with its image Resampler) for the UniVG samplers",
        "the checkpoint's text encoder (OpenCLIP ViT-H), for CLIP Text Encode",
        "the checkpoint's VAE, for the UniVG Video VAE nodes and the samplers that encode frames",
        "the checkpoint's CLIP vision tower, for UniVG Multi-Conditioning (None if it has none)",
    )
    FUNCTION = "load"
    CATEGORY = "UniVG"
    DESCRIPTION = ("Loads a UniVG / VideoCrafter / DynamiCrafter video checkpoint key-for-key (or a UniVG Mini file, "
                   "whose VAE and towers come from ComfyUI's model folders).")
    SEARCH_ALIASES = ["video checkpoint", "load video model", "VideoCrafter", "DynamiCrafter", "UniVG Mini"]

    def load(self, ckpt_name: str, dtype: str):
        path = resolve(ckpt_name)
        try:
            source = file_identity(path)
        except OSError:  # gone since it was listed: load_checkpoint names the problem
            source = None
        try:
            loaded = load_checkpoint(path, operations=host_operations(dtype))
        except CheckpointError as error:
            raise ValueError(f"UniVG Checkpoint Loader: {error}") from None
        log.info("UniVG: %s loaded as %s (%s-prediction)", ckpt_name, loaded.family, loaded.prediction)
        clip = build_clip(loaded.text_encoder_state_dict) if loaded.text_encoder_state_dict else None
        vae = build_vae(loaded.vae_state_dict) if loaded.vae_state_dict else None
        clip_vision = build_clip_vision(loaded.image_encoder_state_dict) if loaded.image_encoder_state_dict else None
        clip_vision = with_source(clip_vision, source and (*source, "embedder"))
        companions = load_companions(loaded.metadata, ckpt_name, want_vision=loaded.image_proj is not None)
        clip = clip or companions.get("text_encoder")
        vae = vae or companions.get("vae")
        clip_vision = clip_vision or companions.get("clip_vision")
        return (wrap_in_patcher(loaded, dtype), clip, vae, clip_vision)
