"""The evaluation's metric code on cases with known answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from univg_core.evaluation import report
from univg_core.evaluation.frechet import _net_features, frechet_distance, highpass_features, video_features, video_frechet_distance
from univg_core.evaluation.metrics import first_frame_error, mean_interval, psnr, ssim, trajectory_error
from univg_core.evaluation.studies import conflicting_pairs, held_out_specs
from univg_core.mini.detector import detect
from univg_core.mini.texture import block_detail
from univg_core.mini.world import render


def _clip(index: int = 0, size: int = 64) -> np.ndarray:
    return render(held_out_specs(index + 1)[index], size)


def test_identical_videos_score_infinite_psnr_unit_ssim_and_zero_distance():
    clips = [_clip(i) for i in range(4)]
    assert psnr(clips[0], clips[0]) == math.inf
    assert ssim(clips[0], clips[0]) == pytest.approx(1.0, abs=1e-12)
    assert first_frame_error(clips[0], clips[0][0]) == 0.0
    assert video_frechet_distance(clips, clips) == pytest.approx(0.0, abs=1e-6)


def test_psnr_of_a_known_error():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 10  # squared error 100 on a third of the values
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 3)))
    assert first_frame_error(b, a[0]) == pytest.approx(10 / 3)


def test_ssim_falls_with_noise_and_rejects_mismatched_shapes():
    clip = _clip()
    rng = np.random.Generator(np.random.PCG64(0))
    light = np.clip(clip + rng.normal(0, 5, clip.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(clip + rng.normal(0, 40, clip.shape), 0, 255).astype(np.uint8)
    assert 1.0 > ssim(clip, light) > ssim(clip, heavy) > 0.0
    with pytest.raises(ValueError, match="same shape"):
        ssim(clip, clip[:, :32])


def test_a_shifted_object_gives_the_shift_as_trajectory_error():
    spec = held_out_specs(1)[0]
    shift_px = 5.0
    shifted = dataclasses.replace(spec, centres=tuple((x + shift_px / 64, y) for x, y in spec.centres))
    truth = detect(render(spec, 64)).centroids
    assert trajectory_error(detect(render(shifted, 64)).centroids, truth, 64) == pytest.approx(shift_px, abs=0.25)
    assert trajectory_error(truth, truth, 64) == 0.0


def test_a_lost_object_counts_half_the_diagonal():
    truth = [(0.5, 0.5), (0.5, 0.5)]
    assert trajectory_error([None, (0.5, 0.5)], truth, 64) == pytest.approx(64 * math.sqrt(2) / 4)
    assert trajectory_error([(0.0, 0.5), (0.5, 0.5)], [None, (0.5, 0.5)], 64) == 0.0  # no truth in frame 0
    with pytest.raises(ValueError):
        trajectory_error([None], truth, 64)


def test_frechet_distance_grows_with_the_difference_between_sets():
    rng = np.random.Generator(np.random.PCG64(1))
    a = rng.standard_normal((200, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # two Gaussians differing by a mean shift of 2 in one axis: distance 4 (plus sampling noise)
    assert frechet_distance(a, a + np.array([2.0, 0, 0])) == pytest.approx(4.0, abs=1e-9)
    centred = a - a.mean(axis=0)
    scaled = frechet_distance(centred, centred * 2)  # same mean, covariance S -> 4 S: Tr(S + 4 S - 2 (2 S))
    assert scaled == pytest.approx(np.trace(np.cov(a, rowvar=False)), rel=1e-6)


def test_video_features_tell_colour_and_motion_apart_and_are_fixed():
    specs = held_out_specs(6)
    features = np.stack([video_features(render(spec, 64)) for spec in specs])
    assert features.shape == (6, 128) and np.isfinite(features).all()
    assert len({tuple(np.round(row, 6)) for row in features}) == 6
    again = video_features(render(specs[0], 128))  # resized to 64x64: close to the 64x64 render's
    assert np.abs(again - features[0]).max() < 0.1 * np.abs(features[0]).max()


def test_mean_interval_keeps_infinities_out_and_counts_them():
    stat = mean_interval([1.0, 2.0, 3.0, math.inf])
    assert stat["mean"] == 2.0 and stat["infinite"] == 1 and stat["n"] == 4
    assert stat["high"] - stat["mean"] == pytest.approx(1.96 / math.sqrt(3))
    assert math.isnan(mean_interval([math.inf])["mean"])


def test_conflicting_pairs_disagree_in_colour_shape_background_and_motion():
    pairs = conflicting_pairs(10)
    assert len(pairs) == 10
    for image, text in pairs:
        assert image.colour != text.colour and image.shape != text.shape and image.motion != text.motion
        assert image.background != text.background and text.motion != "growing"


def test_summary_line_reads_the_studies():
    stat = lambda value: {"mean": value, "low": value, "high": value, "n": 1, "infinite": 0}  # noqa: E731
    results = {
        "sr_bgn": {"rows": {"BGN, t = 700": {"psnr_db": stat(20.0)}, "no BGN, t = 700": {"psnr_db": stat(18.5)}}},
        "animation_bgn": {"rows": {"BGN": {"trajectory_error_px": stat(3.0)},
                                   "no BGN": {"trajectory_error_px": stat(5.0)}}},
        "guidance_grid": {"cells": [
            {"w_text": wt, "w_image": wi, "follows_text_colour": wt / 10, "follows_image_colour": wi / 10}
            for wt in (0.0, 7.5) for wi in (0.0, 7.5)]},
    }
    results["guidance_surface"] = {"fit": {"background": {"text_slope": stat(-0.25), "image_slope": stat(0.5)}},
                                   "together": {"difference": stat(0.125)}}
    line = report.summary_line(results)
    assert line == ("bgn_sr_psnr_gain_db=1.5000 bgn_animation_traj_gain_px=2.0000 "
                    "text_following_at_wI0=0.7500 image_following_at_wT0=0.7500 surface_background_text_slope=-0.2500 "
                    "surface_background_image_slope=0.5000 surface_together_gain=0.1250")
    assert "nan" in report.summary_line({})


def test_highpass_features_read_what_a_2x_area_downsample_removes_at_128_px():
    import torch

    specs = held_out_specs(12)
    textured = [render(spec, 128, textured=True) for spec in specs]
    # the network reads the block detail at the frames' own size (2x the detail, as frames map to [-1, 1])
    detail = torch.from_numpy(block_detail(textured[0].astype(np.float32) / 255) * 2)
    expected = _net_features(detail.permute(3, 0, 1, 2).unsqueeze(0))
    np.testing.assert_allclose(highpass_features(textured[0]), expected, rtol=1e-4, atol=1e-6)
    # a flat-coloured video has no detail inside its object: only the outline's; the pattern is seen
    truth = np.stack([highpass_features(video) for video in textured[:6]])
    others = np.stack([highpass_features(video) for video in textured[6:]])
    flat = np.stack([highpass_features(render(spec, 128)) for spec in specs[6:]])
    assert frechet_distance(flat, truth) > 3 * frechet_distance(others, truth) > 0
    # a blocky 2x upsample holds no detail at all: every feature equals a zero input's
    blocky = render(specs[0], 64).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(highpass_features(blocky), highpass_features(np.zeros_like(blocky)), atol=1e-6)
    with pytest.raises(ValueError, match="even sides"):
        highpass_features(np.zeros((2, 5, 6, 3), np.uint8))
