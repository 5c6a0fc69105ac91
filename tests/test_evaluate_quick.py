"""`python -m univg_core.cli.evaluate --quick` end to end on the shipped UniVG Mini: every study
runs, the files are written and the last line carries its numbers, each a real value in
its range. The direction of each result is the README's to report, not this test's to demand."""

from __future__ import annotations

import json
import math
import re

import pytest

from univg_core.cli.evaluate import main

LAST_LINE = re.compile(r"^bgn_sr_psnr_gain_db=(\S+) bgn_animation_traj_gain_px=(\S+) "
                       r"text_following_at_wI0=(\S+) image_following_at_wT0=(\S+) surface_background_text_slope=(\S+) "
                       r"surface_background_image_slope=(\S+) surface_together_gain=(\S+) "
                       r"animation_table3_traj_px=nan animation_same_range_traj_px=nan "
                       r"sr_table3_content_psnr_db=nan sr_same_range_content_psnr_db=nan$")


def test_quick_evaluation_runs_every_study_and_ends_with_the_summary_line(tmp_path, capsys):
    # no BGN arms study in --arms: its keys end the line as nan (test_bgn_arms reads a real one)
    assert main(["--quick", "--out", str(tmp_path), "--arms", str(tmp_path / "no_arms")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    match = LAST_LINE.match(out[-1])
    assert match, out[-1]
    sr_gain, trajectory_gain, text_following, image_following, *surface = map(float, match.groups())
    assert all(math.isfinite(value) for value in (sr_gain, trajectory_gain, text_following, image_following, *surface))
    assert 0 <= text_following <= 1 and 0 <= image_following <= 1 and -1 <= surface[2] <= 1
    document = json.loads((tmp_path / "results.json").read_text())
    assert set(document["results"]) == {"animation_bgn", "sr_bgn", "guidance_grid", "guidance_surface", "text_faithfulness",
                                        "interpolation", "long_video"}
    assert document["summary"]["bgn_sr_psnr_gain_db"] == pytest.approx(sr_gain, abs=5e-5)  # printed to 4 places
    table = (tmp_path / "results.md").read_text()
    for heading in ("Table 3, animation", "super-resolution", "Figure 6", "Figure 6 as a response surface", "Text faithfulness", "Keyframes: interpolation",
                    "Keyframes: a long video"):
        assert heading in table
    # the SR rows: BGN and no BGN from t = 700, no BGN from t = 900, and bicubic
    assert list(document["results"]["sr_bgn"]["rows"]) == ["BGN, t = 700", "no BGN, t = 700", "no BGN, t = 900",
                                                           "bicubic"]


def test_a_results_file_of_the_arms_study_that_is_not_its_json_is_refused_before_any_study(tmp_path, capsys):
    (tmp_path / "results_sr.json").write_text('{"model": "sr", "lengths": [')
    assert main(["--quick", "--arms", str(tmp_path), "--out", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "results_sr.json" in message and "univg_core.cli.bgn_arms" in message
    assert not (tmp_path / "results.json").exists()


def test_a_missing_model_file_is_named(tmp_path, capsys):
    assert main(["--quick", "--studies", "sr_bgn", "--weights", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "univg_mini_sr.safetensors" in capsys.readouterr().err


def test_a_damaged_model_file_is_named_with_how_to_restore_it(tmp_path, capsys):
    import shutil

    from univg_core.cli.install_mini import WEIGHTS

    for source in WEIGHTS.glob("*.safetensors"):
        shutil.copyfile(source, tmp_path / source.name)
    damaged = tmp_path / "univg_mini_sr_no_bgn.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100_000])
    assert main(["--quick", "--studies", "sr_bgn", "--weights", str(tmp_path), "--out", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "univg_mini_sr_no_bgn.safetensors" in message and "truncated or corrupted" in message
    assert "git checkout -- univg_core/mini/weights" in message
