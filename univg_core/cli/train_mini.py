"""Reproduce every weight of UniVG Mini from scratch, seeded, on the CPU: the world's training
sets, the VAEs, the fixed random text and vision towers, then F_B, the text-to-image model, F_A,
F_SR and F_I (and their no-BGN twins for the ablations) through the pack's own training loop.
RECIPE below is the whole recipe: the stages in order, each with its settings.

    python -m univg_core.cli.train_mini                      # every stage; a finished stage is kept
    python -m univg_core.cli.train_mini --stages vae,base    # some of them

Each stage keeps what an earlier run finished (delete a file to redo it). Small weights go to
--weights (the repository ships them); datasets, towers and training state to --work (ignored
by git)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .mini_stages import (
    ROOT,
    WEIGHTS,
    StaleWorkError,
    stage_world,
    stage_vae,
    stage_sr_vae,
    stage_towers,
    stage_base,
    stage_first_frame,
    stage_base_image,
    stage_animation,
    stage_sr,
    stage_animation_no_bgn,
    stage_sr_no_bgn,
    stage_interpolation,
    stage_interpolation_no_bgn,
)


@dataclass(frozen=True)
class Setting:
    """One setting of the recipe: the option --NAME (dashes for underscores), its value, what it sets."""

    name: str
    value: object
    help: str = ""


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable
    settings: tuple = ()


# The Mini's recipe: every stage in the order it runs (each reads what the ones before it wrote),
# with the settings it reads; each setting is an option of the command line with this value.
RECIPE = (
    Stage("world", stage_world, (
        Setting("clips", 1000, "clips per training set"),
        Setting("image_clips", 240, "clips the image-reading F_B learns from (their vision tokens cost seconds each)"),
    )),
    Stage("vae", stage_vae, (
        Setting("vae_steps", 4000, "encoder and decoder together"),
        Setting("decoder_steps", 2000, "then the decoder alone, on whole frames"),
        Setting("noisy_decoder_steps", 1800, "then on noisy latents"),
        Setting("decoder_latent_noise", 0.3, "most latent noise the decoder learns to read, in units of the scaled "
                                             "latents (the SR VAE's noisy phase too)"),
        Setting("vae_object_weight", 0.0, "experiment, not the shipped recipe: the VAE's object pixels weigh 1 + this "
                                          "in its loss, in all three phases; the UNets must then be trained again on "
                                          "its latents"),
    )),
    Stage("sr_vae", stage_sr_vae, (
        Setting("sr_vae_steps", 2000, "F_SR's VAE, encoder and decoder"),
        Setting("sr_vae_noisy_steps", 0, "then its decoder alone on noisy latents (0: none, the shipped recipe)"),
        Setting("sr_vae_detail_weight", 4.0, "the error of what a 2x area downsample removes counts this much more "
                                             "in the SR VAE's loss"),
    )),
    Stage("towers", stage_towers),
    Stage("base", stage_base, (
        Setting("base_steps", 4000, "F_B's first phase (text dropout 0.5)"),
        Setting("base_ema_steps", 8000, "F_B's second phase (text dropout 0.1, EMA of the weights)"),
        Setting("base_ema", 0.999, "EMA decay of F_B's second phase (and of the text-to-image model)"),
        Setting("base_lr", 4e-4, "F_B's learning rate"),
    )),
    Stage("first_frame", stage_first_frame, (
        Setting("first_frame_steps", 6000, "the text-to-image model (F_B fine-tuned on first frames, EMA as F_B's "
                                           "second phase)"),
        Setting("first_frame_batch_size", 32, "first frames per step"),
    )),
    Stage("base_image", stage_base_image, (
        Setting("base_image_steps", 3000, "the image-reading F_B"),
        Setting("base_image_object_weight", 4.0, "its object cells weigh 1 + this times their share of object pixels "
                                                 "in its loss (0: the paper's plain loss)"),
    )),
    Stage("animation", stage_animation, (Setting("animation_steps", 4800, "F_A and its no-BGN twin"),)),
    Stage("sr", stage_sr, (
        Setting("sr_steps", 800, "F_SR and its no-BGN twin"),
        Setting("sr_clean_share", 0.2, "the share of clips whose low-resolution input is clean (halved) instead "
                                       "of degraded"),
    )),
    Stage("animation_no_bgn", stage_animation_no_bgn),
    Stage("sr_no_bgn", stage_sr_no_bgn),
    Stage("interpolation", stage_interpolation, (
        Setting("interpolation_steps", 1500, "F_I and its no-BGN twin, fine-tuned from F_A"),
        Setting("interpolation_t_m", 567, "F_I's BGN window start"),
        Setting("interpolation_t_n", 875, "F_I's BGN window end (where sampling starts)"),
        Setting("interpolation_loop_share", 0.0, "the share of clips F_I and its twin see played there and back (a "
                                                 "loop: the last frame is the first)"),
        Setting("interpolation_object_weight", 0.0, "experiment, not the shipped recipe: F_I's and its twin's object "
                                                    "cells weigh 1 + this times their share of object pixels in the loss"),
    )),
    Stage("interpolation_no_bgn", stage_interpolation_no_bgn),
)
# read by every UNet stage
COMMON_SETTINGS = (
    Setting("batch_size", 8, "clips per step"),
    Setting("lr", 2e-4, "learning rate of the stages fine-tuned from F_B"),
    Setting("seed", 0, "every stage's seed"),
)
STAGES = tuple(stage.name for stage in RECIPE)


def _add_settings(group, settings) -> None:
    for setting in settings:
        group.add_argument("--" + setting.name.replace("_", "-"), type=type(setting.value), default=setting.value,
                           help=setting.help)


def recipe_parser() -> argparse.ArgumentParser:
    """The command line: which stages, where files go, and every setting of RECIPE, grouped by stage."""
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.train_mini", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of: {', '.join(STAGES)}")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "mini", help="datasets, towers, training state")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="where the shipped weights go")
    parser.add_argument("--relative-position", action="store_true",
                        help="experiment: F_B with relative-position temporal attention (VideoCrafter1's), "
                             "written to WORK/experiments/univg_mini_base_relpos.safetensors; only with --stages base")
    _add_settings(parser.add_argument_group("every UNet stage"), COMMON_SETTINGS)
    for stage in RECIPE:
        if stage.settings:
            _add_settings(parser.add_argument_group(f"stage {stage.name}"), stage.settings)
    return parser


def main(argv=None) -> int:
    parser = recipe_parser()
    args = parser.parse_args(argv)
    stages = [stage.strip() for stage in args.stages.split(",") if stage.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(STAGES)}")
    if args.relative_position and stages != ["base"]:
        parser.error("--relative-position trains an experimental F_B alone: use it with --stages base")
    torch.manual_seed(args.seed)
    for stage in RECIPE:
        if stage.name in stages:
            start = time.monotonic()
            try:
                stage.run(args)
            except StaleWorkError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            print(f"stage {stage.name}: {(time.monotonic() - start) / 60:.1f} min", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
