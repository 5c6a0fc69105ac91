"""Issue 37's fair test of Biased Gaussian Noise (Table 3) on UniVG Mini: four F_A arms
(evaluation.bgn_arms) and four F_SR arms (evaluation.sr_arms), each trained with two training
seeds from the same start, kept at several training lengths, every one sampled on the same
held-out clips and sampling seeds and compared in pairs with 95% intervals; for F_SR also the
preservation-vs-detail frontier against SDEdit with the no-BGN model.

    python -m univg_core.cli.bgn_arms                  # train (resumable), then score; see docs for the time
    python -m univg_core.cli.bgn_arms --models sr      # one half
    python -m univg_core.cli.bgn_arms --quick          # tiny arms on 8 clips, a few steps (the test suite)

Training state, arm files and the world's clips go to --work; results_<model>.json and .md to
--out; the last line printed is machine-readable (report_arms.summary_line: the paired difference of
Table 3's question and of the same question on one t range, per model). A finished arm, length or
score is kept: run it again to go on after a stop."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..evaluation import bgn_arms, sr_arms
from ..evaluation.report_arms import markdown, summary_line
from ..mini import models, towers
from ..mini.dataset import TRUTH, write_dataset
from ..mini.render import MiniRenderer
from ..training.trainer import TrainOptions, train
from .install_mini import WEIGHTS

ROOT = Path(__file__).resolve().parents[2]
WORLDS = {"animation": ("world64", 0, models.SIZE, False), "sr": ("world128_textured", 1, 2 * models.SIZE, True)}
SR_INIT = "sr_init.safetensors"  # F_B with the SR VAE's scale factor and companion: every F_SR arm's start


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m univg_core.cli.bgn_arms", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="animation,sr", help="comma-separated, of: animation, sr")
    p.add_argument("--work", type=Path, help="clips, training state, arm files (default .cache/bgn_arms, "
                                             "with --quick .cache/bgn_arms_quick)")
    p.add_argument("--out", type=Path, help="results_<model>.json and .md (default: WORK)")
    p.add_argument("--weights", type=Path, default=WEIGHTS, help="the shipped UniVG Mini files (F_B, the VAEs)")
    p.add_argument("--towers", type=Path, default=ROOT / ".cache" / "mini" / "towers", help="the fixed random towers")
    p.add_argument("--training-seeds", type=_csv_ints, default=(0, 1), help="one run per arm and seed")
    p.add_argument("--lengths", type=_csv_ints, default=(500, 1000), help="F_A's training steps at which it is scored")
    p.add_argument("--sr-lengths", type=_csv_ints, default=(200, 400), help="F_SR's training steps at which it is scored")
    p.add_argument("--clips", type=int, default=1000, help="training clips per world set")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--quick", action="store_true", help="8 training clips, lengths 1,2 (F_SR: 2), 2 held-out clips, 4 steps, SDEdit from 2 starts")
    return p


def arm_file(work: Path, arm: bgn_arms.Arm, seed: int, length: int) -> Path:
    return work / "arms" / f"{arm.name}_seed{seed}_{length}.safetensors"


def _world(args, model: str) -> Path:
    name, seed, size, textured = WORLDS[model]
    folder = args.work / name
    if not (folder / TRUTH).is_file():
        write_dataset(folder, args.clips, seed, models.FRAMES, size, models.FPS, log=_log, textured=textured)
    return folder


def _sr_init(args) -> Path:
    init = args.work / SR_INIT
    if not init.is_file():
        from safetensors import safe_open

        with safe_open(str(args.weights / models.SR_VAE_FILE), "pt") as handle:
            scale = float(handle.metadata()["univg.scale_factor"])
        models.write_with_vae(args.weights / models.BASE_FILE, init, models.SR_VAE_FILE, scale)
    return init


def task_options(args, model: str, seed: int) -> dict:
    """What every arm of one model shares (train_mini's recipe for F_A and F_SR)."""
    text_file, vision_file = towers.write_towers(args.towers, args.towers)
    name, _, size, _ = WORLDS[model]
    common = dict(data=str(_world(args, model)), text_encoder=str(text_file), image_encoder=str(vision_file),
                  frames=models.FRAMES, height=size, width=size, batch_size=args.batch_size, lr=args.lr,
                  weight_decay=0.0, gradient_checkpointing=False, dropout=0.0, save_every=100, seed=seed,
                  data_seed=0, cache_dir=str(args.work / "cache" / name), log_every=50, image_tokens=False)
    if model == "animation":
        return dict(common, task="animation", init=str(args.weights / models.BASE_FILE),
                    vae=str(args.weights / models.VAE_FILE), prediction="v")
    return dict(common, task="sr", init=str(_sr_init(args)), vae=str(args.weights / models.SR_VAE_FILE),
                zero_terminal_snr=True, latent_crop=models.SIZE // 8, clean_share=0.2)


def train_arm(args, model: str, arm: bgn_arms.Arm, seed: int, lengths) -> None:
    """One arm and training seed, to every length (one resumable run; its file copied at each)."""
    run_out = args.work / "runs" / f"{arm.name}_seed{seed}.safetensors"
    window = dict(t_m=arm.window[0], t_n=arm.window[1]) if arm.window else dict(bgn=False, t_max=arm.t_max)
    for length in lengths:
        keep = arm_file(args.work, arm, seed, length)
        if keep.is_file():
            continue
        start = time.monotonic()
        train(TrainOptions(out=str(run_out), steps=length, **task_options(args, model, seed), **window), log=_log)
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_out, keep)
        _log(f"{keep.name}: {(time.monotonic() - start) / 60:.1f} min")


class Scores:
    """Scores kept in a JSON file as they are made, so a stopped run goes on where it was; the file
    records the study's size and is refused for another."""

    def __init__(self, path: Path, size: dict):
        self.path, self.size = path, json.loads(json.dumps(size))  # as the file holds it (tuples as lists)
        size = self.size
        document = json.loads(path.read_text()) if path.is_file() else {"size": size, "scores": {}}
        if document.get("size") != size:
            raise SystemExit(f"error: {path} holds scores of another study size ({document.get('size')}); "
                             "delete it or give another --work")
        self.done = document["scores"]
        self.mismatched: list[str] = []  # rows made again whose per-video scores differ from the kept

    def get(self, name: str, make, needs: str | None = None) -> dict:
        """The kept row `name`, or make() it; a kept row without the key `needs` is made again, and
        its per-video scores are checked to equal the kept ones (the renders are seeded)."""
        kept = self.done.get(name)
        if kept is None or (needs is not None and needs not in kept):
            start = time.monotonic()
            self.done[name] = made = make()
            if kept is not None and kept.get("scores") != made.get("scores"):
                self.mismatched.append(name)
                _log(f"warning: {name} rendered again scores otherwise than the kept row")
            self.path.write_text(json.dumps({"size": self.size, "scores": self.done}))
            _log(f"scored {name}: {time.monotonic() - start:.0f} s")
        return self.done[name]


def score_animation(args, renderer, size: bgn_arms.StudySize) -> dict:
    scores, rows = Scores(args.work / "scores.json", asdict(size)), {}
    for length in args.lengths:
        for seed in args.training_seeds:
            for arm in bgn_arms.animation_arms():
                for sampler in arm.samplers if length == args.lengths[-1] else ("plain",):
                    path = arm_file(args.work, arm, seed, length)
                    rows[(arm.name, sampler, seed, length)] = scores.get(
                        f"{arm.name}|{sampler}|{seed}|{length}",
                        lambda: bgn_arms.score_arm(renderer, path, arm, sampler, size))
    return {"means": bgn_arms.arm_means(rows), "comparisons": [
        entry for length in args.lengths for entry in bgn_arms.compare(rows, args.training_seeds, length)]}


def score_sr(args, renderer, size: sr_arms.SRStudySize) -> dict:
    scores, rows = Scores(args.work / "scores_sr.json", asdict(size)), {}
    last = args.sr_lengths[-1]
    for length in args.sr_lengths:
        for seed in args.training_seeds:
            for arm in sr_arms.sr_arms():
                for sampler in arm.samplers if length == last else ("plain",):
                    path = arm_file(args.work, arm, seed, length)
                    rows[(arm.name, sampler, seed, length)] = scores.get(
                        f"{arm.name}|{sampler}|{seed}|{length}",
                        lambda: sr_arms.score(renderer, path, arm.start / 1000, sampler, size),
                        needs=sr_arms.FEATURES if length == last else None)
    # SDEdit with each no-BGN arm from each start, at the last length (from 700: the arms' own rows)
    arms = {arm.name: arm for arm in sr_arms.sr_arms()}
    curves, sdedit, sdedit_rows = {}, {}, {}
    for seed in args.training_seeds:
        curves[seed], sdedit_rows[seed] = [], {}
        for name, strengths in (("sr_plain_full", args.sdedit_strengths), ("sr_plain_window", args.window_sdedit_strengths)):
            for strength in strengths:
                if round(strength * 1000) == arms[name].start:
                    result = rows[(name, "plain", seed, last)]
                else:
                    path = arm_file(args.work, arms[name], seed, last)
                    result = scores.get(f"sdedit|{name}|{strength}|{seed}|{last}",
                                        lambda: sr_arms.score(renderer, path, strength, "plain", size),
                                        needs=sr_arms.FEATURES)
                curves[seed].append(result["scores"])
                label = f"{name} from t = {round(strength * 1000)}"
                sdedit.setdefault(label, []).extend(result["scores"])
                sdedit_rows[seed][label] = result
    # SDEdit with F_B itself (every arm's start, in the SR VAE's latents): the same rows for every training seed
    f_b_rows = {f"F_B from t = {round(strength * 1000)}": scores.get(
        f"sdedit|f_b|{strength}", lambda: sr_arms.score(renderer, _sr_init(args), strength, "plain", size),
        needs=sr_arms.FEATURES) for strength in args.sdedit_strengths}
    with_f_b = {seed: curves[seed] + [row["scores"] for row in f_b_rows.values()] for seed in args.training_seeds}
    units = rows[("sr_bgn_paper", "plain", args.training_seeds[0], last)]["units"]
    bgn_rows = (("sr_bgn_paper", "plain"), ("sr_bgn_paper", "consistent"), ("sr_bgn_snr", "plain"), ("sr_bgn_snr", "consistent"))
    frontier, frontier_with_f_b = ({f"{arm}/{sampler}": sr_arms.frontier(
        {seed: rows[(arm, sampler, seed, last)]["scores"] for seed in args.training_seeds}, chosen, units, args.training_seeds)
        for arm, sampler in bgn_rows} for chosen in (curves, with_f_b))
    truths = sr_arms.truth_features(size)
    return {"means": bgn_arms.arm_means(rows, sr_arms.METRICS), "frontier": frontier,
            "frontier_with_f_b": frontier_with_f_b,
            "f_b_sdedit_means": {name: {**sr_arms.mean_point(row["scores"]),
                                        "highpass_frechet": sr_arms.set_distance([row], truths)}
                                 for name, row in f_b_rows.items()},
            "sdedit_means": {name: sr_arms.mean_point(values) for name, values in sdedit.items()},
            "comparisons": [entry for length in args.sr_lengths
                            for entry in sr_arms.compare(rows, args.training_seeds, length)],
            "highpass_frechet": highpass_frechet(args, rows, sdedit_rows, bgn_rows, size, last, truths),
            "rendered_again_otherwise": scores.mismatched}


def highpass_frechet(args, rows: dict, sdedit_rows: dict, bgn_rows, size: sr_arms.SRStudySize, last: int,
                     truths) -> dict:
    """The high-pass Fréchet distance at the last length: per arm, solver and training seed (and
    pooled), per SDEdit row, the fixed references, COMPARISONS with bootstrap intervals, and which
    SDEdit rows beat each BGN arm on both content and distance."""
    seeds = args.training_seeds

    def content(row: dict) -> float:
        return float(sum(unit[sr_arms.CONTENT] for unit in row["scores"]) / len(row["scores"]))

    arms = {}
    for (arm, sampler, seed, length), row in rows.items():
        if length == last:
            entry = arms.setdefault(f"{arm}/{sampler}", {})
            entry[str(seed)] = sr_arms.set_distance([row], truths)
    for name, entry in arms.items():
        arm, sampler = name.split("/")
        entry["pooled"] = sr_arms.set_distance([rows[(arm, sampler, seed, last)] for seed in seeds], truths)
    sdedit = {seed: {label: (content(row), sr_arms.set_distance([row], truths)) for label, row in by_label.items()}
              for seed, by_label in sdedit_rows.items()}
    beaten_by = {f"{arm}/{sampler}": sr_arms.set_frontier(
        {seed: (content(rows[(arm, sampler, seed, last)]), arms[f"{arm}/{sampler}"][str(seed)]) for seed in seeds}, sdedit)
        for arm, sampler in bgn_rows}
    resamples = 100 if args.quick else sr_arms.BOOTSTRAP_RESAMPLES
    return {"arms": arms, "references": sr_arms.reference_distances(size, truths),
            "sdedit": {str(seed): {label: value[1] for label, value in by_label.items()} for seed, by_label in sdedit.items()},
            "comparisons": sr_arms.frechet_comparisons(rows, truths, seeds, last, resamples),
            "beaten_by_sdedit": beaten_by}


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    chosen = [name.strip() for name in args.models.split(",") if name.strip()]
    if not chosen or set(chosen) - set(WORLDS):
        parser().error(f"--models takes some of animation, sr; got {args.models!r}")
    size, sr_size = bgn_arms.StudySize(), sr_arms.SRStudySize()
    args.sdedit_strengths, args.window_sdedit_strengths = sr_arms.SDEDIT_STRENGTHS, sr_arms.WINDOW_SDEDIT_STRENGTHS
    if args.quick:
        args.clips, args.lengths, args.sr_lengths, args.batch_size = 8, (1, 2), (2,), 2
        args.sdedit_strengths, args.window_sdedit_strengths = sr_arms.QUICK_SDEDIT_STRENGTHS, sr_arms.QUICK_SDEDIT_STRENGTHS
        size = replace(size, clips=2, sampling_seeds=(0,), steps=4)
        sr_size = replace(sr_size, clips=2, sampling_seeds=(0,), steps=2)
    args.work = args.work or ROOT / ".cache" / ("bgn_arms_quick" if args.quick else "bgn_arms")
    args.out = args.out or args.work
    for name in (models.BASE_FILE, models.VAE_FILE) + ((models.SR_VAE_FILE,) if "sr" in chosen else ()):
        if not (args.weights / name).is_file():
            print(f"error: missing UniVG Mini file {args.weights / name} (python -m univg_core.cli.install_mini "
                  "restores the shipped ones)", file=sys.stderr)
            return 2
    torch.manual_seed(0)
    arms = {"animation": (bgn_arms.animation_arms(), args.lengths), "sr": (sr_arms.sr_arms(), args.sr_lengths)}
    minutes = {}
    for model in chosen:
        start = time.monotonic()
        for seed in args.training_seeds:
            for arm in arms[model][0]:
                train_arm(args, model, arm, seed, arms[model][1])
        minutes[model] = round((time.monotonic() - start) / 60, 1)
    text_file, vision_file = towers.write_towers(args.towers, args.towers)
    renderer = MiniRenderer(text_file, args.weights / models.VAE_FILE, image_encoder=vision_file)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for model in chosen:
        scored = score_animation(args, renderer, size) if model == "animation" else score_sr(args, renderer, sr_size)
        results = {"model": model, "size": asdict(size if model == "animation" else sr_size),
                   "training_seeds": list(args.training_seeds), "lengths": list(arms[model][1]),
                   "arms": [asdict(arm) for arm in arms[model][0]], "training_minutes": minutes[model], **scored}
        (args.out / f"results_{model}.json").write_text(json.dumps(results, indent=2))
        text = markdown(results)
        (args.out / f"results_{model}.md").write_text(text)
        print(text)
        written.append(results)
    print(summary_line(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
