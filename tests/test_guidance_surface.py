"""Figure 6's response surface (univg_core.evaluation.guidance_surface): the continuous scores on
the world's own clips, the fit with a term per pair on synthetic data with a known effect and
with none, and the paired middle-against-edges comparison."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from univg_core.evaluation.guidance_surface import (fit_log_weights, fit_with_intervals, placement,
                                                    together_difference, video_scores)
from univg_core.mini.world import make_spec, render


def test_placement_is_zero_at_the_texts_value_and_one_at_the_images():
    text, image = np.array([0.1, 0.1, 0.2]), np.array([0.9, 0.5, 0.2])
    assert placement(text, text, image) == pytest.approx(0.0)
    assert placement(image, text, image) == pytest.approx(1.0)
    assert placement((text + image) / 2, text, image) == pytest.approx(0.5)
    assert placement(text + np.array([0.0, 0.0, 0.3]), text, image) == pytest.approx(0.0)  # off the line: projected


def _clip(colour: str, background: str) -> np.ndarray:
    spec = make_spec("square", colour, background, "right", frames=8, rng=np.random.default_rng(3))
    return render(spec, 64)


def test_a_video_with_the_images_background_and_the_texts_colour_is_scored_so():
    text = make_spec("circle", "red", "light", "left", frames=8, rng=np.random.default_rng(0))
    image = make_spec("triangle", "blue", "dark", "up", frames=8, rng=np.random.default_rng(1))
    scores = video_scores(_clip("red", "dark"), text, image)
    assert scores["background"] == pytest.approx(1.0, abs=0.01)
    assert abs(scores["colour"]) < 0.1  # the object's edge pixels blend with the background
    assert scores["text_colour"] and scores["image_background"]
    assert not (scores["image_colour"] or scores["text_background"])
    opposite = video_scores(_clip("blue", "light"), text, image)
    assert opposite["background"] == pytest.approx(0.0, abs=0.01) and opposite["colour"] > 0.9


def test_a_video_without_an_object_has_no_colour_score():
    text = make_spec("circle", "red", "light", "left", frames=8, rng=np.random.default_rng(0))
    image = make_spec("triangle", "blue", "dark", "up", frames=8, rng=np.random.default_rng(1))
    empty = np.broadcast_to(np.array([25, 25, 35], dtype=np.uint8), (8, 64, 64, 3))
    scores = video_scores(empty, text, image)
    assert np.isnan(scores["colour"]) and not scores["text_colour"]


def _synthetic(text_slope: float, image_slope: float, pairs: int = 30, seeds: int = 3, noise: float = 0.1):
    rng = np.random.default_rng(7)
    offsets = rng.normal(0.5, 0.3, pairs)
    rows = [(pair, w_text, w_image) for pair, _, w_text, w_image in
            itertools.product(range(pairs), range(seeds), (2.5, 5.0, 7.5), (2.5, 5.0, 7.5))]
    pair, w_text, w_image = (np.array(column) for column in zip(*rows))
    score = offsets[pair] + text_slope * np.log(w_text) + image_slope * np.log(w_image) + rng.normal(0, noise, len(pair))
    return pair, w_text, w_image, score


def test_the_fit_recovers_known_slopes_past_the_pairs_own_levels():
    pair, w_text, w_image, score = _synthetic(-0.2, 0.3)
    assert fit_log_weights(pair, w_text, w_image, score) == pytest.approx((-0.2, 0.3), abs=0.02)
    fit = fit_with_intervals(pair, w_text, w_image, score, draws=200)
    assert fit["text_slope"]["high"] < 0 < fit["image_slope"]["low"]
    assert fit["text_slope"]["low"] <= -0.2 <= fit["text_slope"]["high"]


def test_with_no_effect_both_intervals_hold_zero():
    pair, w_text, w_image, score = _synthetic(0.0, 0.0)
    fit = fit_with_intervals(pair, w_text, w_image, score, draws=200)
    for slope in ("text_slope", "image_slope"):
        assert fit[slope]["low"] < 0 < fit[slope]["high"], fit


def test_missing_scores_are_left_out_of_the_fit():
    pair, w_text, w_image, score = _synthetic(-0.2, 0.3)
    holes = score.copy()
    holes[::5] = np.nan
    assert fit_log_weights(pair, w_text, w_image, holes) == pytest.approx((-0.2, 0.3), abs=0.03)


def test_the_middle_against_the_edges_is_paired_per_pair_and_seed():
    rows = []
    for pair, seed in itertools.product(range(10), range(2)):
        for w_text, w_image in itertools.product((0.0, 2.5, 7.5), repeat=2):
            middle = w_text > 0 and w_image > 0
            rows.append({"pair": pair, "seed": seed, "w_text": w_text, "w_image": w_image,
                         "image_background": True, "text_colour": middle and (pair + seed) % 2 == 0})
    found = together_difference(rows)
    assert found["middle"]["mean"] == pytest.approx(0.5) and found["edges"]["mean"] == 0.0
    assert found["difference"]["mean"] == pytest.approx(0.5) and found["difference"]["low"] > 0
