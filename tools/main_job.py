"""The main job: render a bundled workflow headlessly on the project's ComfyUI host.

    python -m tools.main_job [--workflow W] [--seed N] [--checkpoint NAME] [--steps N] ...

Uses the checkpoint in models/univg/ (the first one, or --checkpoint; once per checkpoint
loader for the two-model workflows; default workflow text_to_video). With none there it
renders with UniVG Mini, the small trained model the pack ships (installed into models/ on
first use: its UNet and VAE are copied, its fixed text and vision towers rebuilt from their
seed), at its own size: 64x64, 8 frames, a caption of its world; its default workflow is the
paper's route for text (MINI_DEFAULT_WORKFLOW). Workflows whose Mini model is not shipped yet
render with a random-weight demo checkpoint (the video is noise) and say so. --seed sets every
sampler's seed (default: the workflow's own, fixed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .comfy_host import ROOT, HostError, Server, output_files, prepare_base, queue_prompt, status_of, wait_for
from .mini_workflows import (PROMPT_TITLES, apply_mini, apply_video_settings, checkpoint_loaders,
                             mini_models_for, seeds_of, set_seed)
from .progress_watch import ProgressWatcher

MODELS = ROOT / "models"
OUTPUT = ROOT / "output"
BASE = ROOT / ".host" / "base"
WORKFLOWS = ROOT / "workflows" / "api"
FAMILY_FOR = {"text_to_video": "videocrafter2_t2v_512", "image_to_video": "univg_base",
              "text_image_to_video": "univg_base", "animation": "univg_animation",
              "text_to_video_ksampler": "videocrafter2_t2v_512", "animation_custom_sampler": "univg_animation",
              "keyframe_interpolation": "dynamicrafter_512", "loop": "dynamicrafter_512"}
DEFAULT_WORKFLOW = "text_to_video"  # with a checkpoint of the user's: one model, text only
# with UniVG Mini: the paper's route for text, which renders the caption far more often than F_B alone
MINI_DEFAULT_WORKFLOW = "text_to_video_two_stage"
ROUTES = {
    "text_to_video": "F_B draws the video from the prompt",
    "text_to_video_two_stage": "the paper's route for text: the prompt -> a first frame (the text-to-image "
                               "model) -> F_A animates it with the prompt",
}
HELP = (
    "Put a video checkpoint in {folder}: VideoCrafter2 (model.ckpt, text-to-video 512x320), VideoCrafter1 "
    "(i2v_512_v1 / t2v_1024_v1), DynamiCrafter (256/512/1024, for the animation workflow), or a UniVG "
    ".safetensors made with the BGN fine-tuning."
)


def example_image(path: Path, last: bool = False) -> None:
    """A 512x320 gradient (`last`: mirrored left to right) for the real-model workflows' inputs."""
    from PIL import Image

    width, height = 512, 320
    image = Image.new("RGB", (width, height))
    image.putdata([(int(255 * ((width - 1 - x) if last else x) / width), int(255 * y / height), 128)
                   for y in range(height) for x in range(width)])
    image.save(path)


def default_workflow(users_checkpoint: bool) -> str:
    """The workflow rendered without --workflow: text only with a checkpoint of the user's, the
    paper's route for text with UniVG Mini."""
    return DEFAULT_WORKFLOW if users_checkpoint else MINI_DEFAULT_WORKFLOW


def choose_checkpoints(workflow: dict, given: Optional[list[str]], user_files: list[str]) -> list[str]:
    """One file a checkpoint loader of `workflow`, in its order: the `--checkpoint` names, else
    the first of the user's files when the workflow has one loader. A two-model workflow needs
    both named: the same file in both loaders (a base model in the upscaler's) would not work."""
    loaders = checkpoint_loaders(workflow)
    if given and len(given) == len(loaders):
        return list(given)
    if not given and len(loaders) == 1:
        return user_files[:1]
    wanted = ", ".join(f"{node['_meta']['title']} (default {node['inputs']['ckpt_name']})" for node in loaders)
    got = f"got {len(given)} --checkpoint" if given else f"found {', '.join(user_files)} in models/univg"
    raise ValueError(f"this workflow has {len(loaders)} checkpoint loaders: {wanted}; give --checkpoint "
                     f"{len(loaders)} times, in that order ({got})")


def set_checkpoint_and_overrides(workflow: dict, checkpoints: list[str], overrides: dict, prompt, demo: bool) -> None:
    """The user's (or the random demo) checkpoints in the loaders, in order; the command line's settings."""
    if demo:
        overrides = {k: v if v is not None else {"steps": 10, "frames": 8}.get(k) for k, v in overrides.items()}
    settings = {key: value for key, value in overrides.items() if value is not None}
    for node, checkpoint in zip(checkpoint_loaders(workflow), checkpoints):
        node["inputs"]["ckpt_name"] = checkpoint
    for node in workflow.values():
        apply_video_settings(node, settings, {k: v for k, v in settings.items() if k not in ("width", "height")})
        if prompt is not None and node["class_type"] == "CLIPTextEncode" and node["_meta"]["title"] in PROMPT_TITLES:
            node["inputs"]["text"] = prompt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.main_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow", choices=sorted(p.stem for p in WORKFLOWS.glob("*.json")),
                        help=f"default: {MINI_DEFAULT_WORKFLOW} with UniVG Mini, {DEFAULT_WORKFLOW} with a checkpoint of yours")
    parser.add_argument("--checkpoint", action="append", metavar="NAME",
                        help="file name in models/univg (default: the first one); once per checkpoint loader of "
                             "the workflow, in its order (twice for base_then_super_resolution and "
                             "text_to_video_two_stage: the base model, then the second one)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the workflow's)")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--prompt", help="the positive prompt (default: the workflow's; UniVG Mini: one of its world)")
    parser.add_argument("--seed", type=int, help="the seed of every sampler of the workflow (default: the workflow's, 42)")
    parser.add_argument("--timeout", type=float, default=6 * 3600)
    args = parser.parse_args(argv)

    folder = MODELS / "univg"
    folder.mkdir(parents=True, exist_ok=True)
    available = sorted(p.name for p in folder.iterdir() if p.suffix in (".ckpt", ".safetensors", ".pt", ".pth"))
    demo = mini = False
    user_files = [name for name in available if not name.startswith(("univg_demo_random", "univg_mini_"))]
    if args.workflow is None:
        args.workflow = default_workflow(bool(args.checkpoint or user_files))
    mini_files = mini_models_for(args.workflow)
    workflow = json.loads((WORKFLOWS / f"{args.workflow}.json").read_text())
    overrides = {"steps": args.steps, "frames": args.frames, "width": args.width, "height": args.height}
    if args.checkpoint or user_files:
        missing = [name for name in args.checkpoint or () if name not in available]
        if missing:
            print(f"error: {', '.join(missing)} not in {folder}. " + HELP.format(folder=folder), file=sys.stderr)
            return 2
        try:
            checkpoints = choose_checkpoints(workflow, args.checkpoint, user_files)
        except ValueError as error:
            print(f"error: {args.workflow}: {error}", file=sys.stderr)
            return 2
    elif mini_files:
        from univg_core.cli.install_mini import MiniInstallError, install

        print(f"No checkpoint of yours in {folder}: rendering with UniVG Mini, the small model this pack trains "
              "on a world of coloured shapes (it knows 3 shapes, 5 colours, 3 backgrounds, 5 motions). "
              "To render with a real model: " + HELP.format(folder=folder))
        try:
            install(MODELS)
        except MiniInstallError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        checkpoints, mini = list(mini_files), True
    else:
        if args.workflow not in FAMILY_FOR:
            print(f"error: no checkpoint for {args.workflow}. " + HELP.format(folder=folder), file=sys.stderr)
            return 2
        print("No checkpoint found. " + HELP.format(folder=folder))
        print("Rendering with a random-weight demo checkpoint instead: the pipeline runs end to end, the video is noise.")
        from .demo_checkpoint import write_demo_checkpoint

        checkpoints = [f"univg_demo_random_{FAMILY_FOR[args.workflow]}.safetensors"]
        if not (folder / checkpoints[0]).exists():
            write_demo_checkpoint(str(folder / checkpoints[0]), FAMILY_FOR[args.workflow])
        demo = True
    checkpoint = " + ".join(checkpoints)
    if args.seed is not None:
        set_seed(workflow, args.seed)
    seeds = seeds_of(workflow)
    route = ROUTES.get(args.workflow, "see README.md, Workflows")
    print(f"Workflow {args.workflow} ({route}), seed {', '.join(map(str, seeds))}", flush=True)

    if mini:
        workflow = apply_mini(workflow, args.workflow, args.prompt, overrides)
    else:
        set_checkpoint_and_overrides(workflow, checkpoints, overrides, args.prompt, demo)

    base = prepare_base(BASE, models=MODELS, output=OUTPUT)
    for name, last in (("univg_example.png", False), ("univg_example_last.png", True)):
        if not (base / "input" / name).exists():
            example_image(base / "input" / name, last)
    print(f"Starting ComfyUI headless (log: {base / 'comfyui.log'}) ...", flush=True)
    try:
        with Server(base) as server:
            node_types = {node_id: node["class_type"] for node_id, node in workflow.items()}
            with ProgressWatcher(server.url, node_types, print_line=lambda line: print(f"  {line}", flush=True)) as watch:
                prompt_id = queue_prompt(server.url, workflow, client_id=watch.client_id)
                print(f"Queued {args.workflow} with {checkpoint} as prompt {prompt_id}; rendering ...", flush=True)
                if watch.error is not None:
                    print(f"  (no live progress: {watch.error!r}; waiting for the result)", flush=True)
                entry = wait_for(server.url, prompt_id, timeout=args.timeout)
    except HostError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    status, message = status_of(entry)
    files = output_files(entry, OUTPUT)
    if status != "success" or not files:
        print(f"error: render {status}: {message or 'no output file'}", file=sys.stderr)
        return 1
    for path in files:
        print(f"output: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
