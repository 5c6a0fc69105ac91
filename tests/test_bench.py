"""The benchmark CLI runs and reports what it measured (its times are never asserted)."""

import json

from univg_core.cli import bench
from univg_core.mini.models import mini_base_config, parameter_count


def test_bench_train_reports_a_finite_step_of_the_mini_f_b(capsys):
    assert bench.main(["train", "--warmup", "0", "--repeats", "2", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "univg_mini_base" and report["input"] == [8, 4, 8, 8, 8]
    # the UNet alone (the Resampler is not trained in the text-only stages)
    assert report["parameters"] < parameter_count(mini_base_config(1.0))
    assert report["loss_finite"] and len(report["seconds_all"]) == 2 and report["seconds_per_step_median"] > 0
    assert report["process_peak_rss_gib"] > 0
