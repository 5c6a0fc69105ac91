"""How often each bundled workflow renders what it says with UniVG Mini, through the real ComfyUI
host: the world's example caption ("a red circle moving right on a dark background") and its
example image (that circle at the left), one render per seed, each video read by the world's
detector. Prints a Markdown table (the README's and docs/univg_mini.md's).

    python -m tools.workflow_rates [--seeds 10] [--workflows animation,loop,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from univg_core.mini.detector import detect, object_masks, pieces
from univg_core.mini.interp_eval import frame_objects, moves_between

from .mini_workflows import MINI_MODELS, apply_mini, set_seed

ROOT = Path(__file__).resolve().parent.parent
API_WORKFLOWS = ROOT / "workflows" / "api"
COLOUR, MOTION, BACKGROUND = "red", "right", "dark"  # the example caption's, and the example image's
COLOUR_SHARE = 0.75  # of the frames: 6 of 8
MOTION_FRAMES = 8  # a long video's motion is read over its first window (the world's clips are 8 frames)
# what each workflow is asked to show beyond the caption's colour and background in most frames
IMAGE_ONLY = {"image_to_video"}  # w_T 0: the image gives colour and background, the noise the motion
INTERPOLATION = {"keyframe_interpolation"}  # between the circle at the left and at the right
LOOPS = {"loop"}  # starts and ends on the image: no one direction


@dataclass(frozen=True)
class Reading:
    """What a rendered video showed: `verdict` is "ok" or the first thing that failed."""

    verdict: str
    colour_share: float  # of the frames: one object, of the caption's colour
    motion: Optional[str]

    @property
    def passed(self) -> bool:
        return self.verdict == "ok"


def asked(workflow_name: str) -> str:
    """The check, in words, for the table."""
    if workflow_name in INTERPOLATION:
        return "the circle between the keyframes, moving from one to the other"
    wanted = f"one {COLOUR} object in {COLOUR_SHARE:.0%} of frames, {BACKGROUND} background"
    if workflow_name in IMAGE_ONLY or workflow_name in LOOPS:
        return wanted
    return wanted + f", moving {MOTION}"


def read_video(workflow_name: str, frames: np.ndarray) -> Reading:
    """Score frames [T, H, W, 3] (uint8) against what `workflow_name` is asked to show."""
    objects = frame_objects(frames)
    masks = object_masks(np.asarray(frames, dtype=np.float64) / 255)
    share = float(np.mean([item.found and item.colour == COLOUR and pieces(mask) == 1
                           for item, mask in zip(objects, masks)]))
    found = detect(frames[:MOTION_FRAMES])
    if workflow_name in INTERPOLATION:
        verdict = moves_between(frames)
        return Reading(verdict, share, found.motion)
    if share < COLOUR_SHARE:
        verdict = f"one {COLOUR} object in {share:.0%} of frames"
    elif found.background != BACKGROUND:
        verdict = f"background {found.background}"
    elif workflow_name not in IMAGE_ONLY | LOOPS and found.motion != MOTION:
        verdict = f"moves {found.motion}"
    else:
        verdict = "ok"
    return Reading(verdict, share, found.motion)


def mini_api(workflow_name: str, seed: int) -> dict:
    """The bundled API workflow set up for the Mini (its example caption and image) at `seed`."""
    template = json.loads((API_WORKFLOWS / f"{workflow_name}.json").read_text())
    api = apply_mini(template, workflow_name)
    set_seed(api, seed)
    return api


def rates(render: Callable[[dict], np.ndarray], workflow_names: Sequence[str], seeds: Sequence[int],
          log: Callable[[str], None] = lambda line: None) -> dict:
    """workflow -> its Readings, one per seed; `render` runs an API workflow and returns its frames."""
    readings = {}
    for name in workflow_names:
        readings[name] = []
        for seed in seeds:
            start = time.monotonic()
            reading = read_video(name, render(mini_api(name, seed)))
            readings[name].append(reading)
            log(f"{name} seed {seed}: {reading.verdict} ({time.monotonic() - start:.1f} s)")
    return readings


def table(readings: dict) -> str:
    rows = ["| workflow | asked | passes | frames with one red object (mean) | motion read (first 8 frames) | what failed |",
            "|---|---|---|---|---|---|"]
    for name, items in readings.items():
        passes = sum(item.passed for item in items)
        motions = _counts(item.motion or "none" for item in items)
        failures = _counts(item.verdict for item in items if not item.passed)
        share = np.mean([item.colour_share for item in items])
        rows.append(f"| {name} | {asked(name)} | {passes}/{len(items)} ({passes / len(items):.0%}) | {share:.0%} | "
                    f"{motions} | {failures or '-'} |")
    return "\n".join(rows)


def _counts(values) -> str:
    return ", ".join(f"{value} {count}" for value, count in Counter(values).most_common())


def _read_mp4(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])])


def _server_renderer(server, output: Path) -> Callable[[dict], np.ndarray]:
    from .comfy_host import HostError, output_files, queue_prompt, status_of, wait_for

    def render(api: dict) -> np.ndarray:
        entry = wait_for(server.url, queue_prompt(server.url, api), timeout=3600)
        status, message = status_of(entry)
        videos = [path for path in output_files(entry, output) if path.suffix == ".mp4"]
        if status != "success" or not videos:
            raise HostError(f"render {status}: {message or 'no video saved'}")
        return _read_mp4(videos[0])

    return render


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 per workflow")
    parser.add_argument("--workflows", help="comma-separated (default: every workflow the Mini renders)")
    parser.add_argument("--base", type=Path, default=ROOT / ".cache" / "workflow_rates",
                        help="the host's base directory (its output; models are the main job's, models/)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: at least 1 seed per workflow")
    names = args.workflows.split(",") if args.workflows else list(MINI_MODELS)
    unknown = [name for name in names if name not in MINI_MODELS]
    if unknown:
        parser.error(f"UniVG Mini does not render {', '.join(unknown)}; it renders {', '.join(MINI_MODELS)}")
    from univg_core.cli.install_mini import install

    from .comfy_host import Server, prepare_base, require_host
    from .main_job import MODELS

    require_host()
    base = prepare_base(args.base, models=MODELS)  # the Mini's towers (2 GB) built once for both
    install(MODELS, log=lambda line: print(line, file=sys.stderr))
    start = time.monotonic()
    with Server(base) as server:
        readings = rates(_server_renderer(server, base / "output"), names, range(args.seeds),
                         log=lambda line: print(line, file=sys.stderr, flush=True))
    print(table(readings))
    print(f"\n{len(names)} workflows x {args.seeds} seeds in {(time.monotonic() - start) / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
