"""Which solver the shipped UniVG Mini F_SR samples best with: the same clips and noise super-
resolved with the plain and the BGN-consistent solver, consistent - plain per score with a 95%
interval over clips (evaluation.paired), against the textured 128x128 truth.

    python -m univg_core.cli.sr_solver                    # 12 validation clips x 2 seeds
    python -m univg_core.cli.sr_solver --seed 200002      # the test clips

About 3 s a video on a 2-core CPU (12 clips x 2 seeds x 2 solvers: under 2 minutes)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..evaluation.paired import paired_difference, verdict
from ..mini import models, towers
from ..mini.render import MiniRenderer
from ..mini.sr_eval import VALIDATION_SEED, content_kept
from ..mini.sr_quality import sr_scores
from ..mini.world import make_specs, render
from .install_mini import WEIGHTS

ROOT = Path(__file__).resolve().parents[2]
SCORES = ("content_psnr", "detail_coherence", "texture_right", "content_kept", "psnr")


def compare_solvers(renderer: MiniRenderer, sr_file: Path, clips: int, seed: int, sampling_seeds, strength: float,
                    text_weight: float, steps: int) -> dict:
    """Per score: consistent - plain over clip x sampling seed units, the interval over clips."""
    scores = {"plain": [], "consistent": []}
    units = []
    for index, spec in enumerate(make_specs(clips, seed, models.FRAMES)):
        low, truth = render(spec, models.SIZE), render(spec, 2 * models.SIZE, textured=True)
        for sampling_seed in sampling_seeds:
            units.append(index)
            for solver, rows in scores.items():
                frames = renderer.super_resolve(sr_file, low, spec.caption, seed=sampling_seed, steps=steps,
                                                strength=strength, text_weight=text_weight, bgn_sampling=solver)
                rows.append({**sr_scores(frames, spec, truth, low), "content_kept": float(content_kept(frames, low))})
    out = {}
    for key in SCORES:
        difference = paired_difference([row[key] for row in scores["consistent"]], [row[key] for row in scores["plain"]],
                                       [0] * len(units), units)
        out[key] = {**difference, "plain": sum(row[key] for row in scores["plain"]) / len(units),
                    "verdict": verdict(difference, lower_is_better=False)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.sr_solver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=WEIGHTS / models.SR_FILE, help="an F_SR file")
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED, help="the world seed of the clips")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--sampling-seeds", default="0,1", help="comma-separated")
    parser.add_argument("--strength", type=float, default=0.7, help="t_n / 1000")
    parser.add_argument("--text-weight", type=float, default=models.SR_TEXT_WEIGHT)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--towers", type=Path, default=ROOT / ".cache" / "mini" / "towers")
    args = parser.parse_args(argv)
    try:
        sampling_seeds = [int(part) for part in args.sampling_seeds.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sampling-seeds takes comma-separated integers, got {args.sampling_seeds!r}")
    if not args.model.is_file() or args.clips < 2 or not sampling_seeds:
        parser.error(f"need an F_SR file (got {args.model}), --clips of at least 2 and a sampling seed")
    text_file, vision_file = towers.write_towers(args.towers, args.towers)
    renderer = MiniRenderer(text_file, WEIGHTS / models.VAE_FILE, image_encoder=vision_file)
    found = compare_solvers(renderer, args.model, args.clips, args.seed, sampling_seeds, args.strength,
                            args.text_weight, args.steps)
    print("| score | plain | consistent - plain (95% interval over clips) | verdict |\n|---|---:|---|---|")
    for key, entry in found.items():
        half = (entry["high"] - entry["low"]) / 2
        print(f"| {key} | {entry['plain']:.4g} | {entry['mean']:+.3g} ± {half:.2g} | {entry['verdict']} |")
    print(json.dumps({key: {k: entry[k] for k in ("plain", "mean", "low", "high", "verdict")} for key, entry in found.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
