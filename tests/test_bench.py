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


def test_bench_memory_runs_every_arm_in_its_own_process_and_ends_with_the_ratio_line(capsys):
    """A reduced shape: the three arms of ours (fp32 batched, bf16 one branch after another, bf16 one
    branch), their peaks read during the call, and without --lvdm-root a last line that says the
    ratios are against ours_fp32."""
    import re

    assert bench.main(["memory", "--quick", "--frames", "2", "--height", "64", "--width", "64"]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"peak_memory_ratio_vs_lvdm=\d+\.\d{3} bf16_speedup_vs_lvdm_fp32=\d+\.\d{3} "
                        r"max_abs_err=\S+ \(no --lvdm-root: ratios against ours_fp32, not lvdm\)", last), last
    report = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert set(report["arms"]) == {"ours_fp32", "ours_bf16", "ours_bf16_one"} and report["reference"] == "ours_fp32"
    for arm in report["arms"].values():
        assert arm["seconds"] > 0 and 0 < arm["peak_rss_gib"] <= max(arm["peak_rss_gib"], arm["loading_peak_rss_gib"])
    # bf16 weights keep the guided fp32 output to within 15% (7% measured: random weights amplify rounding
    # layer by layer, and guidance multiplies the branches' differences by 7.5); wrong weights would be ~100%
    assert 0 < report["relative_l2_err"] < 0.15 and report["max_abs_err"] > 0, report
    assert report["ours_fp32_max_abs_err_vs_reference"] == 0.0


def test_gpu_check_without_cuda_says_so_and_runs_the_cpu_parts(tmp_path):
    """On this CPU machine: "no CUDA", the kernels checked through Triton's interpreter against SDPA,
    a reduced render finite, and the JSON written."""
    import subprocess
    import sys

    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "-m", "univg_core.cli.gpu_check", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("no CUDA"), done.stdout
    report = json.loads(out.read_text())
    assert report["cuda"] is False
    assert len(report["attention"]) >= 6 and all(row["max_error"] < 1e-4 for row in report["attention"])
    (render,) = report["render"]
    assert render["model"] == "ours" and render["finite"] and render["seconds_per_step"] > 0
    assert render["frames_height_width"] == [4, 64, 64] and render["peak_vram_gib"] is None
