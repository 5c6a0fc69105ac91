"""Issue 37's fair BGN study for animation: the paired-interval code on synthetic data with a
known effect and with none, the arms' windows and t ranges, the no-BGN t range in training, and
`python -m univg_core.cli.bgn_arms --quick` end to end on tiny arms trained from the shipped F_B."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from univg_core.evaluation import bgn_arms, report_arms, sr_arms
from univg_core.evaluation.paired import paired_difference, side_of_curve, sign_test, t_quantile_975, verdict
from univg_core.training.model_setup import TrainingSetupError
from univg_core.training.objective import TASKS, timestep_range
from univg_core.training.options import TrainOptions, validate


def test_a_known_paired_effect_is_recovered_and_its_interval_excludes_zero():
    rng = np.random.default_rng(0)
    b = rng.normal(10, 3, size=200)  # units differ a lot from each other; the pairing removes that
    a = b + 0.5 + rng.normal(0, 0.5, size=200)
    groups = [0] * 100 + [1] * 100
    difference = paired_difference(a, b, groups)
    assert difference["low"] < 0.5 < difference["high"] and difference["low"] > 0
    assert set(difference["by_group"]) == {"0", "1"} and all(v > 0 for v in difference["by_group"].values())
    assert verdict(difference, lower_is_better=True) == "a worse"
    assert verdict(difference, lower_is_better=False) == "a better"
    assert difference["a_higher"] + difference["b_higher"] + difference["equal"] == 200


def test_no_effect_gives_an_interval_holding_zero_and_no_verdict():
    rng = np.random.default_rng(1)
    b = rng.normal(10, 3, size=200)
    a = b + rng.normal(0, 0.5, size=200)
    difference = paired_difference(a, b, [0] * 100 + [1] * 100)
    assert difference["low"] < 0 < difference["high"]
    assert verdict(difference, lower_is_better=True) == "no measurable difference"


def test_a_pooled_effect_that_one_training_seed_contradicts_gets_no_verdict():
    a = np.array([1.0] * 90 + [-0.1] * 10)
    difference = paired_difference(a, np.zeros(100), [0] * 90 + [1] * 10)
    assert difference["low"] > 0  # the pooled interval alone would call it
    assert difference["by_group"]["1"] < 0
    assert verdict(difference, lower_is_better=True) == "no measurable difference"


def test_paired_scores_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="as many units"):
        paired_difference([1.0, 2.0], [1.0], [0, 0])


def test_the_arms_are_the_papers_window_its_snr_match_and_two_no_bgn_ranges():
    arms = {arm.name: arm for arm in bgn_arms.animation_arms()}
    assert arms["bgn_paper"].window == (600, 990) and arms["bgn_paper"].start == 990
    assert arms["bgn_snr"].window == (567, 875) and arms["bgn_snr"].start == 875
    assert arms["plain_full"].window is None and arms["plain_full"].t_max is None
    assert arms["plain_window"].window is None and arms["plain_window"].t_max == 875 == arms["plain_window"].start
    assert arms["bgn_snr"].samplers == ("plain", "consistent") and arms["plain_window"].samplers == ("plain",)
    names = {name for _, a, b in bgn_arms.COMPARISONS for name, _ in (a, b)}
    assert names == set(arms)


def test_a_run_without_bgn_can_draw_t_from_part_of_the_schedule_only():
    spec = TASKS["animation"]
    assert timestep_range(spec, None, 1000) == (0, 999)
    assert timestep_range(spec, None, 1000, t_max=875) == (0, 875)
    assert timestep_range(spec, (567, 875), 1000) == (0, 875)
    options = TrainOptions(task="animation", init="x.safetensors", data="d", out="o.safetensors", t_max=875)
    with pytest.raises(TrainingSetupError, match="--t-max applies to a run without BGN"):
        validate(options)
    validate(TrainOptions(task="animation", init="x.safetensors", data="d", out="o.safetensors", t_max=875, bgn=False))


def test_clustered_intervals_widen_with_a_clips_repeated_units_and_use_students_t():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(15) == pytest.approx(2.131, abs=1e-3)
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)
    rng = np.random.default_rng(2)
    clip_effect = np.repeat(rng.normal(0, 1, size=16), 4)  # each clip's 4 units share most of their difference
    a, b = clip_effect + rng.normal(0, 0.1, size=64), np.zeros(64)
    groups, clips = [0, 1] * 32, np.repeat(np.arange(16), 4)
    by_unit, by_clip = paired_difference(a, b, groups), paired_difference(a, b, groups, clips)
    assert by_clip["clusters"] == 16 and by_unit["clusters"] == 64 and by_clip["mean"] == by_unit["mean"]
    assert (by_clip["high"] - by_clip["low"]) > 1.7 * (by_unit["high"] - by_unit["low"])
    with pytest.raises(ValueError, match="as many units"):
        paired_difference([1.0, 2.0], [1.0, 2.0], [0, 0], [0])


def test_the_sign_test_and_the_side_of_a_trade_off_frontier():
    assert sign_test(0, 0) == 1.0 and sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024) and sign_test(0, 10) == sign_test(10, 0)
    assert sign_test(7, 3) == pytest.approx(2 * (120 + 45 + 10 + 1) / 1024)
    curve = [(30.0, 0.1), (25.0, 0.5), (20.0, 0.9)]  # SDEdit: less content, more detail as t grows
    assert side_of_curve((27.5, 0.4), curve) == 1 and side_of_curve((27.5, 0.2), curve) == -1
    assert side_of_curve((27.5, 0.3), curve) == 0
    assert side_of_curve((35.0, 0.2), curve) == 1  # more content and more detail than the gentlest SDEdit
    assert side_of_curve((15.0, 0.5), curve) == -1  # less of both than the strongest
    # a strong start that loses detail again does not pull the frontier down: (25, 0.5) beats (22, 0.45)
    dipping = [(30.0, 0.1), (25.0, 0.5), (20.0, 0.2)]
    assert side_of_curve((22.0, 0.45), dipping) == -1


def test_the_sr_frontier_counts_clips_by_their_units_majority_per_training_seed():
    curves = {0: [[{"content_psnr": 30, "detail_coherence": 0.0}] * 6, [{"content_psnr": 20, "detail_coherence": 1.0}] * 6]}
    points = {0: [{"content_psnr": 25, "detail_coherence": d} for d in (0.9, 0.8, 0.1, 0.2, 0.9, 0.1)]}
    units = ["0/0", "0/1", "1/0", "1/1", "2/0", "2/1"]
    result = sr_arms.frontier(points, curves, units, [0])["0"]
    assert (result["above"], result["below"], result["on"]) == (1, 1, 1)  # clip 2 is split: on
    assert (result["units_above"], result["units_below"]) == (3, 3) and result["p"] == pytest.approx(1.0)
    arms = {arm.name: arm for arm in sr_arms.sr_arms()}
    assert arms["sr_bgn_paper"].window == (0, 700) and arms["sr_bgn_snr"].window == (0, 656)
    assert arms["sr_plain_window"].t_max == 700 and arms["sr_plain_full"].start == 700


def _feature_row(features: np.ndarray, sampling_seeds=(0, 1)) -> dict:
    clips = len(features) // len(sampling_seeds)
    return {"units": [f"{clip}/{seed}" for clip in range(clips) for seed in sampling_seeds],
            sr_arms.FEATURES: features.tolist()}


def test_the_bootstrap_of_a_frechet_difference_finds_a_known_effect_and_none_where_there_is_none():
    rng = np.random.default_rng(3)
    truths = rng.normal(size=(12, 6))
    near = [_feature_row(np.repeat(truths, 2, axis=0) + rng.normal(0, 0.3, size=(24, 6))) for _ in range(2)]
    far = [_feature_row(np.repeat(truths, 2, axis=0) + 1.0 + rng.normal(0, 0.3, size=(24, 6))) for _ in range(2)]
    better = sr_arms.bootstrap_difference(near, far, truths, resamples=300)
    assert better["high"] < 0 and all(value < 0 for value in better["by_group"])
    assert better["low"] <= better["mean"] <= better["high"]
    assert sr_arms.frechet_verdict(better) == "a better"
    assert sr_arms.frechet_verdict(sr_arms.bootstrap_difference(far, near, truths, resamples=300)) == "a worse"
    twin = [_feature_row(np.repeat(truths, 2, axis=0) + rng.normal(0, 0.3, size=(24, 6))) for _ in range(2)]
    none = sr_arms.bootstrap_difference(near, twin, truths, resamples=300)
    assert none["low"] < 0 < none["high"] and sr_arms.frechet_verdict(none) == "no measurable difference"
    # pooled over both training seeds, the same as the distance of all 48 videos
    assert sr_arms.set_distance(near, truths) == pytest.approx(
        sr_arms.frechet_distance(np.concatenate([np.asarray(r[sr_arms.FEATURES]) for r in near]), truths))
    with pytest.raises(ValueError, match="different clips"):
        sr_arms.bootstrap_difference(near, [{**far[0], "units": far[0]["units"][::-1]}, far[1]], truths, resamples=2)


def test_the_set_frontier_names_the_sdedit_rows_that_beat_an_arm_on_content_and_distance():
    sdedit = {0: {"t = 100": (27.0, 0.10), "t = 500": (19.0, 0.04), "t = 900": (15.0, 0.20)}}
    assert sr_arms.set_frontier({0: (18.0, 0.05)}, sdedit) == {"0": ["t = 500"]}  # t = 100 keeps more, but its distance is higher
    assert sr_arms.set_frontier({0: (18.0, 0.03)}, sdedit) == {"0": []}
    assert sr_arms.set_frontier({0: (14.0, 0.30)}, sdedit) == {"0": ["t = 100", "t = 500", "t = 900"]}


def test_arms_scored_on_other_clips_are_not_compared():
    row = {"units": ["0/0"], "scores": [{"trajectory_error_px": 1.0, "colour": 1.0, "shape": 1.0, "motion": 1.0,
                                         "all_three": 1.0}]}
    other = {**row, "units": ["1/0"]}
    rows = {("bgn_paper", "plain", 0, 5): row, ("plain_full", "plain", 0, 5): other}
    with pytest.raises(ValueError, match="different clips"):
        bgn_arms.compare(rows, [0], 5)


def test_quick_arms_train_resume_score_and_compare_in_pairs(tmp_path, capsys):
    from univg_core.cli.bgn_arms import main

    assert main(["--quick", "--work", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    values = dict(part.split("=") for part in last.split())
    assert set(values) == {"animation_table3_traj_px", "animation_same_range_traj_px", "sr_table3_content_psnr_db",
                           "sr_same_range_content_psnr_db"}
    assert all(math.isfinite(float(value)) for value in values.values())
    # cli.evaluate's summary line reads the same values back from the study's folder
    assert report_arms.format_values(report_arms.folder_summary(tmp_path)) == last
    arms = tmp_path / "arms"
    for arm in bgn_arms.animation_arms():  # the animation arms to two lengths: a run resumed (F_SR's: one length)
        for seed in (0, 1):
            one, two = arms / f"{arm.name}_seed{seed}_1.safetensors", arms / f"{arm.name}_seed{seed}_2.safetensors"
            assert one.is_file() and two.is_file() and one.read_bytes() != two.read_bytes()  # the run went on
    for arm in sr_arms.sr_arms():
        assert all((arms / f"{arm.name}_seed{seed}_2.safetensors").is_file() for seed in (0, 1))
    for model, comparisons, lengths in (("animation", bgn_arms.COMPARISONS, [1, 2]), ("sr", sr_arms.COMPARISONS, [2])):
        results = json.loads((tmp_path / f"results_{model}.json").read_text())
        assert results["lengths"] == lengths and results["training_seeds"] == [0, 1]
        # every arm and seed at every length, the consistent solver at the last length only
        rows = {(row["arm"], row["sampler"], row["training_seed"], row["length"]) for row in results["means"]}
        assert len(rows) == 2 * 4 * (len(lengths) - 1) + 2 * 6
        assert sum(entry["length"] == 2 for entry in results["comparisons"]) == len(comparisons)
        for entry in results["comparisons"]:
            for difference in entry["metrics"].values():
                # 2 clips x 1 sampling seed x 2 training seeds, the interval over the 2 clips
                assert difference["n"] == 4 and difference["clusters"] == 2 and set(difference["by_group"]) == {"0", "1"}
        assert "Paired differences" in (tmp_path / f"results_{model}.md").read_text()
    sr = json.loads((tmp_path / "results_sr.json").read_text())
    # --quick: SDEdit with each no-BGN arm from 300 and from 700 (the arms' own start: their rows reused)
    assert set(sr["sdedit_means"]) == {f"{name} from t = {t}" for name in ("sr_plain_full", "sr_plain_window") for t in (300, 700)}
    # the high-pass Fréchet distance of every arm and solver at the last length, and of SDEdit's rows
    frechet = sr["highpass_frechet"]
    assert len(frechet["arms"]) == 6 and all(set(v) == {"0", "1", "pooled"} for v in frechet["arms"].values())
    assert all(len(rows) == len(sr["sdedit_means"]) for rows in frechet["sdedit"].values())
    assert len(frechet["comparisons"]) == len(sr_arms.COMPARISONS) and sr["rendered_again_otherwise"] == []
    assert frechet["references"]["bicubic"] > frechet["references"]["other truths"] > 0
    assert "Fréchet distance at 128 px on high-passed frames" in (tmp_path / "results_sr.md").read_text()
    for seeds in list(sr["frontier"].values()) + list(sr["frontier_with_f_b"].values()):
        assert set(seeds) == {"0", "1"} and all(v["above"] + v["below"] + v["on"] == 2 for v in seeds.values())
    # SDEdit with F_B itself from every start; its points only ever lower a BGN arm's count above the frontier
    assert set(sr["f_b_sdedit_means"]) == {"F_B from t = 300", "F_B from t = 700"}
    for name, seeds in sr["frontier_with_f_b"].items():
        for seed, sides in seeds.items():
            assert sides["units_above"] <= sr["frontier"][name][seed]["units_above"]
    # a second run keeps every trained file and score
    kept = [(tmp_path / name).read_text() for name in ("scores.json", "scores_sr.json")]
    assert main(["--quick", "--work", str(tmp_path)]) == 0
    assert [(tmp_path / name).read_text() for name in ("scores.json", "scores_sr.json")] == kept


def test_kept_scores_of_another_study_size_are_refused_and_of_the_same_size_reused(tmp_path):
    from univg_core.cli.bgn_arms import Scores

    path = tmp_path / "scores.json"
    size = {"clips": 2, "sampling_seeds": (0, 1)}
    made = []
    assert Scores(path, size).get("row", lambda: made.append(1) or {"x": 1}) == {"x": 1}
    assert Scores(path, size).get("row", lambda: made.append(1) or {"x": 2}) == {"x": 1} and made == [1]
    with pytest.raises(SystemExit, match="another study size"):
        Scores(path, {"clips": 3, "sampling_seeds": (0, 1)})
    # a kept row without a key now needed is made again, and scores that differ from the kept are named
    kept = Scores(path, size)
    assert kept.get("row", lambda: {"x": 1, "features": [0]}, needs="features") == {"x": 1, "features": [0]}
    assert kept.mismatched == []  # the kept row had no "scores" to differ from
    Scores(path, size).get("scored", lambda: {"scores": [1.0]})
    again = Scores(path, size)
    assert again.get("scored", lambda: {"scores": [1.5], "features": [0]}, needs="features")["scores"] == [1.5]
    assert again.mismatched == ["scored"]
    assert again.get("row", lambda: made.append(1) or {}, needs="features") == {"x": 1, "features": [0]} and made == [1]


def test_the_summary_read_from_a_folder_gives_nan_for_a_half_not_run_and_refuses_another_models_file(tmp_path):
    question = sr_arms.COMPARISONS[1][0]
    results = {"model": "sr", "lengths": [200, 400], "comparisons": [
        {"length": 200, "question": question, "metrics": {"content_psnr": {"mean": 9.0}}},
        {"length": 400, "question": question, "metrics": {"content_psnr": {"mean": -0.25}}}]}
    (tmp_path / "results_sr.json").write_text(json.dumps(results))
    values = report_arms.folder_summary(tmp_path)
    assert values["sr_same_range_content_psnr_db"] == -0.25  # the last length's
    assert math.isnan(values["sr_table3_content_psnr_db"])  # that question is not in the file
    assert math.isnan(values["animation_table3_traj_px"]) and math.isnan(values["animation_same_range_traj_px"])
    assert "sr_same_range_content_psnr_db=-0.2500" in report_arms.format_values(values)
    (tmp_path / "results_animation.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="expected 'animation'"):
        report_arms.folder_summary(tmp_path)


def test_the_solver_check_of_the_shipped_sr_pairs_both_solvers_on_the_same_clips(capsys):
    from univg_core.cli.sr_solver import SCORES, main

    assert main(["--clips", "2", "--sampling-seeds", "0", "--steps", "2"]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(found) == set(SCORES)
    for key, entry in found.items():
        assert entry["low"] <= entry["mean"] <= entry["high"] and entry["verdict"] in (
            "a better", "a worse", "no measurable difference")
    assert 5 < found["content_psnr"]["plain"] < 60 and 0 <= found["texture_right"]["plain"] <= 1
    with pytest.raises(SystemExit):
        main(["--clips", "1"])
