"""The bundled workflows set up for UniVG Mini: its model files in the loaders, its size (64x64,
8 frames; the upscaler 2x that), a caption of its world and the world's example image. The main
job and the host tests render the workflows through this."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

from univg_core.cli.install_mini import WEIGHTS
from univg_core.mini import models
from univg_core.mini.world import EXAMPLE_CAPTION, EXAMPLE_IMAGE_FILE, EXAMPLE_LAST_IMAGE_FILE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_IMAGE = ROOT / "workflows" / EXAMPLE_IMAGE_FILE

# per workflow, the Mini file of each UniVG Checkpoint Loader in the order the workflow lists them
MINI_MODELS = {
    "text_to_video": (models.BASE_FILE,),
    "image_to_video": (models.BASE_IMAGE_FILE,),
    "text_image_to_video": (models.BASE_IMAGE_FILE,),
    "animation": (models.ANIMATION_FILE,),
    "base_then_super_resolution": (models.BASE_FILE, models.SR_FILE),
    "text_to_video_ksampler": (models.BASE_FILE,),
    "animation_custom_sampler": (models.ANIMATION_FILE,),
    # the paper's text -> image -> F_A route: the Mini's text-to-image model draws one frame
    "text_to_video_two_stage": (models.FIRST_FRAME_FILE, models.ANIMATION_FILE),
    # the same, then F_SR to twice the size: the paper's whole route for text
    "text_to_video_three_stage": (models.FIRST_FRAME_FILE, models.ANIMATION_FILE, models.SR_FILE),
    # F_I between the example's first and last frames (the paper's future work: BGN interpolation)
    "keyframe_interpolation": (models.INTERPOLATION_FILE,),
    # F_I with the example image at both ends, the repeated frame dropped
    "loop": (models.INTERPOLATION_FILE,),
    # the two-stage route, then the video continued three times from its last frame
    "long_video": (models.FIRST_FRAME_FILE, models.ANIMATION_FILE),
}
# the bundled workflows' input images -> the pack's example images the Mini variants take instead
EXAMPLE_FOR_INPUT = {"univg_example.png": EXAMPLE_IMAGE_FILE, "univg_example_last.png": EXAMPLE_LAST_IMAGE_FILE}
ONE_FRAME_BASE = {"text_to_video_two_stage", "text_to_video_three_stage", "long_video"}  # workflows whose base sampler draws the first frame alone
SAMPLER_SETTINGS = {"steps": 25, "frames": models.FRAMES, "width": models.SIZE, "height": models.SIZE, "fps": models.FPS}
UPSCALER_SETTINGS = {"width": 2 * models.SIZE, "height": 2 * models.SIZE, "fps": models.FPS}
PROMPT_TITLES = ("Positive prompt", "SR prompt", "Animation prompt")  # the caption, for every model of a workflow


def mini_models_for(workflow_name: str, weights: Optional[Path] = None) -> Optional[tuple[str, ...]]:
    """The Mini files the workflow renders with, or None when the Mini has no model for it or
    a file is missing."""
    files = MINI_MODELS.get(workflow_name)
    weights = weights if weights is not None else WEIGHTS
    if files is None or not all((weights / name).is_file() for name in files):
        return None
    return files


def apply_mini(workflow: dict, workflow_name: str, prompt: Optional[str] = None,
               settings: Optional[dict] = None) -> dict:
    """A copy of the API-format `workflow` that renders with the Mini. `settings` (steps, frames,
    width, height) replace the Mini's own for the samplers; the upscaler renders twice their size."""
    files = mini_models_for(workflow_name)
    if workflow_name not in MINI_MODELS:
        raise ValueError(f"UniVG Mini has no model for the {workflow_name} workflow; it renders "
                         f"{', '.join(sorted(MINI_MODELS))}")
    if files is None:
        missing = [name for name in MINI_MODELS[workflow_name] if not (WEIGHTS / name).is_file()]
        raise ValueError(f"{workflow_name} with UniVG Mini needs {', '.join(missing)}, missing from {WEIGHTS}; "
                         "restore it with `git checkout -- univg_core/mini/weights`")
    sampler = {**SAMPLER_SETTINGS, **{k: v for k, v in (settings or {}).items() if v is not None}}
    upscaler = {**UPSCALER_SETTINGS, "width": 2 * sampler["width"], "height": 2 * sampler["height"]}
    workflow = copy.deepcopy(workflow)
    loaders = checkpoint_loaders(workflow)
    if len(loaders) != len(files):
        raise ValueError(f"{workflow_name}: {len(loaders)} checkpoint loaders, the Mini setup expects {len(files)}")
    for node, name in zip(loaders, files):
        node["inputs"]["ckpt_name"] = name
    for node in workflow.values():
        inputs, kind = node["inputs"], node["class_type"]
        apply_video_settings(node, sampler, upscaler)
        if kind == "UniVGBaseSampler" and workflow_name in ONE_FRAME_BASE:
            inputs["frames"] = 1
        if guides_the_animation_model(kind, files):
            inputs["guidance_from_t"] = models.ANIMATION_GUIDANCE_FROM_T
        if kind == "UniVGUpscaler":
            inputs["text_weight"] = models.SR_TEXT_WEIGHT
        if kind == "UniVGAnimationSampler" and "last_frame" in inputs:  # F_I between two keyframes
            inputs["text_weight"] = models.INTERPOLATION_TEXT_WEIGHT
        if kind == "CreateVideo":
            inputs["fps"] = float(sampler["fps"])
        elif kind == "LoadImage":  # the pack's own example: nothing to copy into ComfyUI's input folder
            example = EXAMPLE_FOR_INPUT.get(inputs["image"], EXAMPLE_IMAGE_FILE)
            node["class_type"], node["inputs"] = "UniVGExampleImage", {"image": example}
            node["_meta"] = {**node.get("_meta", {}), "title": "UniVG Example Image"}
        elif kind == "CLIPTextEncode" and node["_meta"]["title"] in PROMPT_TITLES:
            inputs["text"] = prompt if prompt is not None else EXAMPLE_CAPTION
    return workflow


def guides_the_animation_model(kind: str, files: tuple[str, ...]) -> bool:
    """Whether a node of this class, in a workflow that loads `files`, guides the Mini's F_A: every
    UniVG Animation Sampler, and the Multi-Condition Guider where F_A is the only model."""
    return kind in ("UniVGAnimationSampler", "UniVGExtendVideo") or (
        kind == "UniVGMultiConditionGuider" and files == (models.ANIMATION_FILE,))


SEED_INPUTS = ("seed", "noise_seed")  # UniVG samplers, the upscaler and KSampler; core RandomNoise


def _seed_inputs(workflow: dict) -> list[tuple[dict, str]]:
    """(inputs, name) of every seed widget of an API-format workflow (a seed linked from another node stays a link)."""
    return [(node["inputs"], name) for node in workflow.values() for name in SEED_INPUTS
            if name in node["inputs"] and not isinstance(node["inputs"][name], list)]


def set_seed(workflow: dict, seed: int) -> int:
    """Put `seed` into every seed input of an API-format workflow; returns how many it set."""
    places = _seed_inputs(workflow)
    for inputs, name in places:
        inputs[name] = seed
    return len(places)


def seeds_of(workflow: dict) -> list[int]:
    """The distinct seeds an API-format workflow's seed inputs hold, sorted."""
    return sorted({inputs[name] for inputs, name in _seed_inputs(workflow)})


def video_length(workflow: dict) -> int:
    """Frames of the video an API-format workflow saves: its samplers' largest frame count, less
    the repeated frame of a loop, plus every UniVG Extend Video's new frames."""
    frames = max(node["inputs"].get(key, 0) for node in workflow.values() for key in ("frames", "batch_size")
                 if isinstance(node["inputs"].get(key, 0), int))
    frames -= any(node["inputs"].get("loop") is True for node in workflow.values()
                  if node["class_type"] == "UniVGAnimationSampler")
    return frames + sum(node["inputs"]["new_frames"] for node in workflow.values()
                        if node["class_type"] == "UniVGExtendVideo")


def checkpoint_loaders(workflow: dict) -> list[dict]:
    """The UniVG Checkpoint Loader nodes of an API-format workflow, in its order."""
    return [node for node in workflow.values() if node["class_type"] == "UniVGCheckpointLoader"]


def apply_video_settings(node: dict, sampler: dict, upscaler: Optional[dict] = None) -> None:
    """Put `sampler` (steps, frames, width, height, fps; each optional) into a node of any
    bundled workflow that takes one of them (UniVG samplers, core KSampler, the empty video
    latent, first-frame conditioning, BGN sigmas, Image Scale); `upscaler` into the upscaler."""
    inputs, kind = node["inputs"], node["class_type"]
    size = {k: sampler[k] for k in ("width", "height") if k in sampler}
    if kind in ("UniVGBaseSampler", "UniVGAnimationSampler"):
        inputs.update({k: v for k, v in sampler.items() if k in inputs})
    elif kind == "UniVGExtendVideo":  # one more window of the sampler's frames, the last frame shared
        inputs.update({k: v for k, v in sampler.items() if k in inputs})
        if "frames" in sampler:
            inputs["new_frames"] = sampler["frames"] - 1
    elif kind == "UniVGUpscaler" and upscaler:
        inputs.update({k: v for k, v in upscaler.items() if k in inputs})
    elif kind in ("KSampler", "UniVGBGNSigmas") and "steps" in sampler:
        inputs["steps"] = sampler["steps"]
    elif kind == "EmptyLatentImage":  # a video latent: the batch is the frames
        inputs.update(size, **({"batch_size": sampler["frames"]} if "frames" in sampler else {}))
    elif kind == "UniVGFirstFrameConditioning" and "frames" in sampler:
        inputs["frames"] = sampler["frames"]
    elif kind == "ImageScale":
        inputs.update(size)
