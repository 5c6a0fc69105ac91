"""Markdown tables and the one-line summary of an evaluation's results (the dict the
studies return, keyed by study name)."""

from __future__ import annotations

import math


def _number(value: float, digits: int = 2) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _distance(value: float) -> str:
    return f"{value:.3g}"


def _interval(stat: dict, digits: int = 2, percent: bool = False) -> str:
    scale = 100 if percent else 1
    mean = stat["mean"] * scale
    if math.isnan(stat["low"]):
        return _number(mean, digits)
    half = (stat["high"] - stat["low"]) / 2 * scale
    return f"{_number(mean, digits)} ± {_number(half, digits)}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def animation_table(result: dict) -> str:
    rows = [[label, _interval(r["first_frame_error"]), _interval(r["trajectory_error_px"]),
             _interval(r["colour_accuracy"], 0, True), _interval(r["shape_accuracy"], 0, True),
             _interval(r["motion_accuracy"], 0, True), _distance(r["frechet_distance"])]
            for label, r in result["rows"].items()]
    header = ["F_A", "frame 0 error (levels)", "trajectory error (px)", "colour %", "shape %", "motion %",
              "Fréchet distance"]
    return (f"F_A from q(v_990 | v_C), {result['steps']} DPM-Solver++ steps, {result['videos_per_row']} videos a row "
            "(64x64, 8 frames); mean ± 95% interval; lower is better for errors and distance (for scale: real clips "
            f"of other content score {_distance(result['real_frechet_distance'])}).\n\n" + _table(header, rows))


def sr_table(result: dict) -> str:
    rows = [[label, _interval(r["psnr_db"]), _interval(r["ssim"], 3), _interval(r["colour_accuracy"], 0, True),
             _interval(r["shape_accuracy"], 0, True), _distance(r["frechet_distance"])]
            for label, r in result["rows"].items()]
    header = ["64x64 -> 128x128", "PSNR (dB)", "SSIM", "colour %", "shape %", "Fréchet distance"]
    return (f"F_SR, {result['steps']} DPM-Solver++ steps, {result['clips']} held-out clips x {result['seeds']} seeds, "
            "against the clip rendered at 128x128 (for scale: real clips of other content score a Fréchet distance of "
            f"{_distance(result['real_frechet_distance'])}).\n\n" + _table(header, rows))


def guidance_table(result: dict) -> str:
    weights = sorted({cell["w_text"] for cell in result["cells"]})
    lookup = {(cell["w_text"], cell["w_image"]): cell for cell in result["cells"]}
    tables = []
    for what, title in (("colour", "object's colour"), ("background", "background")):
        rows = []
        for w_text in weights:
            row = [f"w_T {w_text:g}"]
            for w_image in weights:
                cell = lookup[(w_text, w_image)]
                row.append(f"{cell[f'follows_text_{what}']:.0%} / {cell[f'follows_image_{what}']:.0%}")
            rows.append(row)
        tables.append(_table([f"{title}: from text / from image"] + [f"w_I {w:g}" for w in weights], rows))
    motion = [[f"w_T {w_text:g}"] + [f"{lookup[(w_text, w_image)]['text_motion']:.0%}" for w_image in weights]
              for w_text in weights]
    tables.append(_table(["the caption's motion"] + [f"w_I {w:g}" for w in weights], motion))
    videos = result["cells"][0]["videos"]
    return (f"F_B with an image (`univg_mini_base_image`) on {len(result['pairs'])} captions that contradict the "
            f"first frame given (colour, shape, background and motion differ), {videos} videos a cell, "
            f"{result['steps']} DDIM steps.\n\n" + "\n\n".join(tables))


def surface_table(result: dict) -> str:
    weights = result["weights"]
    lookup = {(cell["w_text"], cell["w_image"]): cell for cell in result["cells"]}
    rows = [[f"w_T {w_text:g}"] + [f"{lookup[(w_text, w_image)]['background']:.2f} / "
                                   f"{_number(lookup[(w_text, w_image)]['colour'])} / "
                                   f"{lookup[(w_text, w_image)]['together']:.0%}" for w_image in weights]
            for w_text in weights]
    grid = _table(["background / colour placement / image's background with text's colour"]
                  + [f"w_I {w:g}" for w in weights], rows)
    fits = [[what, _interval(fit["text_slope"], 3), _interval(fit["image_slope"], 3)]
            for what, fit in result["fit"].items()]
    alone = result["alone"]
    together = result["together"]
    checks = [["text alone (largest w_T, w_I 0)", _interval(alone["text_colour_from_text"], 0, True),
               _interval(alone["text_background_from_text"], 0, True)],
              ["image alone (largest w_I, w_T 0)", _interval(alone["image_colour_from_image"], 0, True),
               _interval(alone["image_background_from_image"], 0, True)]]
    return (f"F_B with an image (`univg_mini_base_image`) on {result['pairs']} caption/image pairs that disagree x "
            f"{result['seeds']} seeds, the same noise in every cell, {result['steps']} DDIM steps. Placement: 0 is "
            "the caption's value, 1 the image's (background: the frames' border colour; colour: the object's mean "
            "colour).\n\n" + grid + "\n\n"
            + _table(["slopes, fitted with a term per pair (w > 0), 95% interval over pairs", "per log w_T",
                      "per log w_I"], fits) + "\n\n"
            + _table(["each condition alone", "its colour %", "its background %"], checks) + "\n\n"
            + f"The image's background with the caption's colour: {_interval(together['middle'], 0, True)}% of the "
            f"videos where both weights are positive, {_interval(together['edges'], 0, True)}% where either is 0; "
            f"paired difference {_interval(together['difference'], 0, True)} points.")


def text_table(result: dict) -> str:
    rows = [[label] + [_interval(r[key], 0, True) for key in
                       ("colour_accuracy", "shape_accuracy", "motion_accuracy", "all_three")]
            for label, r in result["rows"].items()]
    header = ["text-to-video", "colour %", "shape %", "motion %", "all three %"]
    return (f"Held-out captions, {result['videos_per_row']} videos a row, {result['steps']} DDIM steps, w_T 7.5; "
            "the detector reads each video.\n\n" + _table(header, rows))


def interpolation_table(result: dict) -> str:
    rows = [[label, _interval(r["psnr_db"]), _interval(r["trajectory_error_px"]), _interval(r["frames_right"], 0, True),
             _interval(r["colour"], 0, True), _interval(r["shape"], 0, True), _interval(r["moves_between"], 0, True)]
            for label, r in result["rows"].items()]
    for key, label in (("bgn_minus_no_bgn", "F_I: BGN - no BGN (paired)"),
                       ("consistent_minus_plain", "F_I: consistent - plain sampler (paired)")):
        paired = result[key]
        rows.append([label, _interval(paired["psnr_db"]), _interval(paired["trajectory_error_px"]),
                     _interval(paired["frames_right"], 0, True), "", "", _interval(paired["moves_between"], 0, True)])
    header = ["frames 1-6 between given 0 and 7", "PSNR (dB)", "trajectory error (px)", "frames right %", "colour %",
              "shape %", "moves between %"]
    return (f"{result['clips']} held-out clips x {result['seeds']} seeds, F_I sampled with {result['steps']} DDIM steps "
            f"(guidance from t = {result['guidance_from_t']}); mean ± 95% interval. Frames right: the detector's object "
            "at the clip's place, size and colour; moves between: one object moving from one keyframe to the other "
            "in every frame between.\n\n" + _table(header, rows))


def long_video_table(result: dict) -> str:
    rows = [[f"{index + 1}", _interval(w["found"], 0, True), _interval(w["colour"], 0, True),
             _interval(w["size_vs_first"]), _interval(w["background_shift"], 1)]
            for index, w in enumerate(result["windows"])]
    header = ["window", "object found %", "caption's colour %", "object area / first window's", "background shift (levels)"]
    return (f"F_A from {result['clips']} held-out clips' first frames x {result['seeds']} seeds, continued from the last "
            f"latent frame ({result['frames']} frames, {result['steps']} DDIM steps a window); background shift: the "
            "frames' border colour from the true clip's.\n\n" + _table(header, rows))


TABLES = {"animation_bgn": animation_table, "sr_bgn": sr_table, "guidance_grid": guidance_table,
          "guidance_surface": surface_table, "text_faithfulness": text_table, "interpolation": interpolation_table, "long_video": long_video_table}
TITLES = {"animation_bgn": "Table 3, animation: Biased Gaussian Noise", "sr_bgn": "Table 3 and Figure 7, "
          "super-resolution: Biased Gaussian Noise", "guidance_grid": "Figure 6: w_T and w_I",
          "guidance_surface": "Figure 6 as a response surface",
          "text_faithfulness": "Text faithfulness", "interpolation": "Keyframes: interpolation",
          "long_video": "Keyframes: a long video in four windows"}


def markdown(results: dict) -> str:
    parts = []
    for name, result in results.items():
        if name in TABLES:
            parts.append(f"### {TITLES[name]}\n\n{TABLES[name](result)}\n")
    return "\n".join(parts)


def _grid_cell(result: dict, w_text: float, w_image: float) -> dict:
    return next(c for c in result["cells"] if c["w_text"] == w_text and c["w_image"] == w_image)


def summary(results: dict) -> dict:
    """The numbers of the machine-readable last line (NaN where a study was not run):
    PSNR gain of BGN over no BGN for F_SR from t = 700; trajectory error saved by BGN for F_A
    (positive: BGN better); how often the object takes the text's colour at w_I = 0 and the
    image's at w_T = 0 (the other weight at its largest); Figure 6's surface: the background's
    slopes per log w_T and per log w_I, and how much more often the middle region shows the
    image's background with the text's colour than the edges."""
    values = dict.fromkeys(("bgn_sr_psnr_gain_db", "bgn_animation_traj_gain_px", "text_following_at_wI0",
                            "image_following_at_wT0", "surface_background_text_slope",
                            "surface_background_image_slope", "surface_together_gain"), math.nan)
    if "sr_bgn" in results:
        rows = results["sr_bgn"]["rows"]
        values["bgn_sr_psnr_gain_db"] = rows["BGN, t = 700"]["psnr_db"]["mean"] - rows["no BGN, t = 700"]["psnr_db"]["mean"]
    if "animation_bgn" in results:
        rows = results["animation_bgn"]["rows"]
        values["bgn_animation_traj_gain_px"] = (rows["no BGN"]["trajectory_error_px"]["mean"]
                                                - rows["BGN"]["trajectory_error_px"]["mean"])
    if "guidance_grid" in results:
        grid = results["guidance_grid"]
        top = max(cell["w_text"] for cell in grid["cells"])
        values["text_following_at_wI0"] = _grid_cell(grid, top, 0.0)["follows_text_colour"]
        values["image_following_at_wT0"] = _grid_cell(grid, 0.0, top)["follows_image_colour"]
    if "guidance_surface" in results:
        found = results["guidance_surface"]
        values["surface_background_text_slope"] = found["fit"]["background"]["text_slope"]["mean"]
        values["surface_background_image_slope"] = found["fit"]["background"]["image_slope"]["mean"]
        values["surface_together_gain"] = found["together"]["difference"]["mean"]
    return values


def summary_line(results: dict) -> str:
    return " ".join(f"{key}={value:.4f}" for key, value in summary(results).items())
