"""Render the README's pictures of what UniVG Mini draws: four of the world's captions, seeds 0
and 1 each, the 8 frames of a video in a row, drawn 2x (nearest) so the 64x64 frames read.

    .venv/bin/python -m tools.make_readme_frames              # F_B: docs/univg_mini_text_to_video.png
    .venv/bin/python -m tools.make_readme_frames --two-stage  # docs/univg_mini_two_stage.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "univg_mini_text_to_video.png"
TWO_STAGE_OUT = ROOT / "docs" / "univg_mini_two_stage.png"  # the text-to-image model's frame, then F_A
TOWERS = ROOT / ".cache" / "mini" / "towers"
# (shape, colour, motion, background): one of each colour but purple, every motion but growing
CAPTIONS = (("circle", "red", "right", "dark"), ("square", "blue", "left", "light"),
            ("triangle", "green", "up", "gray"), ("circle", "yellow", "down", "dark"))
SEEDS = (0, 1)
ZOOM = 2


def frame_rows(text_to_video: Callable[[str, int], np.ndarray]) -> np.ndarray:
    """uint8 [rows * 64, 8 * 64, 3]: one row per (caption, seed), captions in order, seeds in
    pairs; `text_to_video(caption, seed)` renders one video (uint8 [8, 64, 64, 3])."""
    from univg_core.mini.world import caption_for

    rows = [np.concatenate(list(text_to_video(caption_for(*attributes), seed)), axis=1)
            for attributes in CAPTIONS for seed in SEEDS]
    return np.concatenate(rows, axis=0)


def main(argv=None) -> int:
    from PIL import Image

    from univg_core.cli.install_mini import WEIGHTS
    from univg_core.mini import models, towers
    from univg_core.mini.render import MiniRenderer

    parser = argparse.ArgumentParser(prog="python -m tools.make_readme_frames", description=__doc__.split("\n\n")[0])
    parser.add_argument("--two-stage", action="store_true",
                        help="the text_to_video_two_stage route: the text-to-image model's first frame animated by F_A")
    parser.add_argument("--out", type=Path, help=f"default {OUT.name}, or {TWO_STAGE_OUT.name} with --two-stage")
    args = parser.parse_args(argv)
    text_file, _ = towers.write_towers(TOWERS, TOWERS)  # kept when already built
    renderer = MiniRenderer(text_file, WEIGHTS / models.VAE_FILE)
    if args.two_stage:
        first_frame, animation = WEIGHTS / models.FIRST_FRAME_FILE, WEIGHTS / models.ANIMATION_FILE
        grid = frame_rows(lambda caption, seed: renderer.animate(
            animation, renderer.text_to_video(first_frame, caption, seed, frames=1)[0], caption, seed,
            guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T))
    else:
        base = WEIGHTS / models.BASE_FILE
        grid = frame_rows(lambda caption, seed: renderer.text_to_video(base, caption, seed))
    out = args.out or (TWO_STAGE_OUT if args.two_stage else OUT)
    image = Image.fromarray(grid)
    image.resize((image.width * ZOOM, image.height * ZOOM), Image.NEAREST).save(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
