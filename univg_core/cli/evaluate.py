"""Reproduce the paper's claims on UniVG Mini: Biased Gaussian Noise for animation and
super-resolution (Table 3, Figure 7), text against image guidance (Figure 6) and text
faithfulness, and keyframes (interpolation, long videos: the paper's future work), on
held-out clips of the Mini's world, seeded, on the CPU.

    python -m univg_core.cli.evaluate            # everything (see the README for the time)
    python -m univg_core.cli.evaluate --quick    # a few clips and steps (CI)

Writes results.json and results.md to --out; the last line printed is machine-readable:
bgn_sr_psnr_gain_db=... bgn_animation_traj_gain_px=... text_following_at_wI0=... image_following_at_wT0=...
surface_background_text_slope=... surface_background_image_slope=... surface_together_gain=...
followed by the BGN arms study's keys (animation_table3_traj_px=... animation_same_range_traj_px=...
sr_table3_content_psnr_db=... sr_same_range_content_psnr_db=...), read from the results that
python -m univg_core.cli.bgn_arms wrote to --arms (nan for a half not run there)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from ..evaluation import report, report_arms
from ..evaluation.studies import REQUIRES, STUDIES, MiniFiles, Settings, run_study, study_size
from ..mini import models, towers
from ..mini.render import MiniRenderer
from ..checkpoints import CheckpointError
from .install_mini import RESTORE, WEIGHTS

ROOT = Path(__file__).resolve().parents[2]
QUICK = Settings(clips=3, seeds=(0,), animation_steps=10, sr_steps=7, base_steps=10, grid_pairs=2,
                 grid_weights=(0.0, 7.5), keyframe_steps=10, surface_pairs=2, surface_seeds=(0,))


class ProgressBar:
    """One line on stderr, redrawn as videos finish: [####------] 12/40 3.1 s/video label."""

    def __init__(self, total: int, stream=sys.stderr, width: int = 30):
        self.total, self.done, self.stream, self.width = total, 0, stream, width
        self.start = time.monotonic()

    def __call__(self, label: str) -> None:
        elapsed = time.monotonic() - self.start
        rate = f"{elapsed / self.done:.1f} s/video" if self.done else ""
        filled = self.width * self.done // max(self.total, 1)
        self.stream.write(f"\r[{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} {rate} {label:<32}")
        self.stream.flush()
        self.done += 1

    def close(self) -> None:
        self.stream.write(f"\r{' ' * (self.width + 70)}\r")
        self.stream.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", default=",".join(STUDIES), help=f"comma-separated, of: {', '.join(STUDIES)}")
    parser.add_argument("--quick", action="store_true",
                        help="3 clips, 1 seed, 10 animation steps, 2 caption/image pairs on a 2x2 weight grid")
    parser.add_argument("--clips", type=int, help=f"held-out clips per study (default {Settings.clips})")
    parser.add_argument("--seeds", type=int, help=f"seeds per clip (default {len(Settings.seeds)})")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="folder of the UniVG Mini files")
    parser.add_argument("--towers", type=Path, default=ROOT / ".cache" / "mini" / "towers",
                        help="the fixed random text and vision towers (rebuilt here from their seed when missing)")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "evaluation", help="results.json and results.md")
    parser.add_argument("--arms", type=Path, default=ROOT / ".cache" / "bgn_arms",
                        help="the folder where python -m univg_core.cli.bgn_arms wrote its results (its keys end the summary line)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.studies.split(",") if name.strip()]
    unknown = sorted(set(names) - set(STUDIES))
    if unknown:
        parser.error(f"unknown studies {', '.join(unknown)}; expected some of {', '.join(STUDIES)}")
    settings = QUICK if args.quick else Settings()
    if args.clips is not None:
        settings = dataclasses.replace(settings, clips=args.clips)
    if args.seeds is not None:
        settings = dataclasses.replace(settings, seeds=tuple(range(args.seeds)))
    try:
        arms = report_arms.folder_summary(args.arms)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    files = MiniFiles.in_folder(args.weights)
    try:
        files.require(*sorted({need for name in names for need in REQUIRES[name]}))
        if not (args.weights / models.VAE_FILE).is_file():
            raise FileNotFoundError(f"missing UniVG Mini file: {args.weights / models.VAE_FILE} (the shipped VAE)")
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text_file, vision_file = towers.write_towers(args.towers, args.towers)
    renderer = MiniRenderer(text_file, args.weights / models.VAE_FILE, image_encoder=vision_file)
    torch.manual_seed(0)
    progress = ProgressBar(sum(study_size(name, settings) for name in names))
    results, timings = {}, {}
    damaged = None
    try:
        for name in names:
            start = time.monotonic()
            results[name] = run_study(name, renderer, files, settings, progress)
            timings[name] = round(time.monotonic() - start, 1)
    except CheckpointError as error:
        damaged = error
    finally:
        progress.close()
    if damaged is not None:
        print(f"error: {damaged}; {RESTORE}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"settings": dataclasses.asdict(settings), "seconds": timings, "results": results,
                "summary": report.summary(results), "bgn_arms_summary": arms}
    (args.out / "results.json").write_text(json.dumps(document, indent=2))
    (args.out / "results.md").write_text(report.markdown(results))
    print(report.markdown(results))
    print(f"{sum(timings.values()):.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); "
          f"written to {args.out}", file=sys.stderr)
    print(f"{report.summary_line(results)} {report_arms.format_values(arms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
