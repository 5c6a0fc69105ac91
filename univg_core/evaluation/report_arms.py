"""Markdown of the BGN arms study (cli.bgn_arms): every arm's mean scores, each paired question's
difference with its 95% interval and verdict, and for F_SR the frontier against SDEdit; the
summary line's values, also read back from the study's folder for cli.evaluate's summary line."""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import bgn_arms, sr_arms

IDENTITY = ("length", "arm", "sampler", "training_seed")
COMPARISONS = {"animation": bgn_arms.COMPARISONS, "sr": sr_arms.COMPARISONS}
# per model: (score, column heading) of the paired table
SHOWN = {
    "animation": (("trajectory_error_px", "trajectory error (px)"), ("motion", "motion right"),
                  ("colour", "colour right"), ("all_three", "colour, shape and motion right")),
    "sr": (("content_psnr", "content PSNR (dB)"), ("content_kept", "content kept"),
           ("detail_coherence", "detail coherence"), ("texture_right", "pattern drawn")),
}


def means_table(means: list[dict]) -> str:
    scores = [key for key in means[0] if key not in IDENTITY]
    lines = ["| " + " | ".join(("length", "arm", "solver", "training seed", *scores)) + " |",
             "|" + "---|" * (4 + len(scores))]
    for row in means:
        cells = [str(row[key]) for key in IDENTITY] + [f"{row[key]:.4g}" for key in scores]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(difference: dict) -> str:
    half = (difference["high"] - difference["low"]) / 2
    seeds = ", ".join(f"{value:+.3g}" for value in difference["by_group"].values())
    mark = {"a better": " **a better**", "a worse": " **a worse**"}.get(difference["verdict"], "")
    return f"{difference['mean']:+.3g} ± {half:.2g} ({seeds}){mark}"


def comparisons_table(comparisons: list[dict], shown) -> str:
    lines = ["| length | a - b | " + " | ".join(label for _, label in shown) + " |", "|---:|---|" + "---|" * len(shown)]
    for entry in comparisons:
        cells = " | ".join(_cell(entry["metrics"][key]) for key, _ in shown)
        lines.append(f"| {entry['length']} | {entry['question']} | {cells} |")
    return "\n".join(lines)


def frontier_table(results: dict) -> str:
    lines = ["| SDEdit | content PSNR (dB) | detail coherence | content kept | pattern drawn |",
             "|---|---:|---:|---:|---:|"]
    for name, point in results["sdedit_means"].items():
        lines.append(f"| {name} | {point['content_psnr']:.2f} | "
                     f"{point['detail_coherence']:.3f} | {point['content_kept']:.2f} | {point['texture_right']:.2f} |")
    lines += ["", "| BGN arm / solver | per training seed: clips above / below SDEdit's frontier (sign test p; units) |",
              "|---|---|"]
    for name, seeds in results["frontier"].items():
        lines.append(f"| {name} | {_sides(seeds)} |")
    if "frontier_with_f_b" in results:
        lines += ["", "SDEdit with F_B itself (the arms' start; content PSNR, detail coherence, content kept, pattern "
                  "drawn, high-pass Fréchet distance): " + "; ".join(
                      f"{name}: {p['content_psnr']:.2f}, {p['detail_coherence']:.3f}, {p['content_kept']:.2f}, "
                      f"{p['texture_right']:.2f}, {p['highpass_frechet']:.4g}" for name, p in results["f_b_sdedit_means"].items()),
                  "", "| BGN arm / solver | the frontier with F_B's SDEdit points added: clips above / below |", "|---|---|"]
        for name, seeds in results["frontier_with_f_b"].items():
            lines.append(f"| {name} | {_sides(seeds)} |")
    return "\n".join(lines)


def _sides(seeds: dict) -> str:
    return "; ".join(f"seed {seed}: {v['above']} / {v['below']} (p {v['p']:.3g}; {v['units_above']} / "
                     f"{v['units_below']})" for seed, v in seeds.items())


def frechet_table(results: dict) -> str:
    """The high-pass Fréchet distance (lower is better): per arm and training seed, the references,
    SDEdit's rows, the paired questions with their bootstrap intervals."""
    found = results["highpass_frechet"]
    seeds = [str(seed) for seed in results["training_seeds"]]
    lines = ["Fréchet distance at 128 px on high-passed frames, against the test clips' truth (lower is better); "
             + "; ".join(f"{name}: {value:.4g}" for name, value in found["references"].items()) + ".", "",
             "| arm / solver | " + " | ".join(f"seed {seed}" for seed in seeds) + " | pooled | beaten on content and distance by SDEdit |",
             "|---|" + "---:|" * (len(seeds) + 1) + "---|"]
    for name, values in found["arms"].items():
        beaten = found["beaten_by_sdedit"].get(name)
        cell = "-" if beaten is None else "; ".join(f"seed {seed}: {', '.join(rows) or 'none'}" for seed, rows in beaten.items())
        lines.append(f"| {name} | " + " | ".join(f"{values[seed]:.4g}" for seed in seeds) + f" | {values['pooled']:.4g} | {cell} |")
    for seed, rows in found["sdedit"].items():
        lines.append(f"| SDEdit, seed {seed} | " + "; ".join(f"{label}: {value:.4g}" for label, value in rows.items()) + " |")
    lines += ["", "| a - b | distance difference, 95% bootstrap interval over clips (each training seed's) | verdict |",
              "|---|---|---|"]
    for entry in found["comparisons"]:
        seeds_text = ", ".join(f"{value:+.3g}" for value in entry["by_group"])
        lines.append(f"| {entry['question']} | {entry['mean']:+.3g} [{entry['low']:+.3g}, {entry['high']:+.3g}] "
                     f"({seeds_text}) | {entry['verdict']} |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    size, model = results["size"], results["model"]
    parts = [
        f"BGN arms, {model}: {len(results['training_seeds'])} training seeds x lengths {results['lengths']}; "
        f"{size['clips']} held-out clips x {len(size['sampling_seeds'])} sampling seeds, {size['steps']} steps, "
        f"text weight {size['text_weight']}; training {results['training_minutes']} min.",
        means_table(results["means"]),
        "Paired differences a - b over units (clip x sampling seed x training seed): mean ± 95% half-interval, "
        "Student's t over the clips' mean differences (in brackets: each training seed's mean); a verdict only where the interval excludes 0 and every "
        "training seed agrees.",
        comparisons_table(results["comparisons"], SHOWN[model]),
    ]
    if "frontier" in results:
        parts.append(frontier_table(results))
    if "highpass_frechet" in results:
        parts.append(frechet_table(results))
    return "\n\n".join(parts) + "\n"


# the summary line: per model, the first two paired questions (Table 3 as the paper, then on the
# same t range) at the last length, in the model's first score
SUMMARY_KEYS = {"animation": ("animation_table3_traj_px", "animation_same_range_traj_px"),
                "sr": ("sr_table3_content_psnr_db", "sr_same_range_content_psnr_db")}


def summary_values(all_results: list[dict]) -> dict[str, float]:
    """Per model given, the first score's paired difference of its first two questions at the last length."""
    values = {}
    for results in all_results:
        model, last = results["model"], results["lengths"][-1]
        score = SHOWN[model][0][0]
        questions = [question for question, _, _ in COMPARISONS[model][:2]]
        for key, question in zip(SUMMARY_KEYS[model], questions):
            found = [entry for entry in results["comparisons"] if entry["length"] == last and entry["question"] == question]
            values[key] = found[0]["metrics"][score]["mean"] if found else math.nan
    return values


def format_values(values: dict[str, float]) -> str:
    return " ".join(f"{key}={'nan' if math.isnan(value) else f'{value:+.4f}'}" for key, value in values.items())


def summary_line(all_results: list[dict]) -> str:
    return format_values(summary_values(all_results))


def folder_summary(folder: Path) -> dict[str, float]:
    """Every model's summary keys from the results_<model>.json that cli.bgn_arms wrote to `folder`;
    nan for a model whose study has not been run there."""
    values = {key: math.nan for keys in SUMMARY_KEYS.values() for key in keys}
    for model in SUMMARY_KEYS:
        path = Path(folder) / f"results_{model}.json"
        if path.is_file():
            try:
                results = json.loads(path.read_text())
                found = results.get("model")
                if found == model:
                    values.update(summary_values([results]))
            except (json.JSONDecodeError, AttributeError, KeyError, IndexError, TypeError) as error:
                raise ValueError(f"{path} is not the JSON that python -m univg_core.cli.bgn_arms writes: "
                                 f"{type(error).__name__}: {error}") from error
            if found != model:
                raise ValueError(f"{path} holds the results of {found!r}, expected {model!r}")
    return values
