"""What UniVG Mini's F_I does (issue 38): given a held-out clip's first and last frames, the frames
between show one object of the clip's colour and size where the clip has it, more often than the
crossfade it starts from; scored by the world's detector (univg_core.mini.interp_eval) on clips of
a seed that no choice was made on."""

from __future__ import annotations

import pytest

from univg_core.cli.install_mini import WEIGHTS
from univg_core.mini import interp_eval, models

INTERPOLATION = WEIGHTS / models.INTERPOLATION_FILE
CLIPS = 16
CROSSFADE_SHORTFALL = ("F_I draws one object between the keyframes, but the detector finds it at the clip's place, size "
                       "and colour about as often as in the keyframes' crossfade (docs/univg_mini_findings.md, F_I)")


@pytest.fixture(scope="module")
def scores(renderer):
    """Mean between_scores on the test clips: F_I, F_A from the first frame alone, the crossfade."""
    guidance_from_t = models.ANIMATION_GUIDANCE_FROM_T  # as the Mini's workflows guide F_A and F_I
    ours = interp_eval.evaluate(renderer, INTERPOLATION, interp_eval.TEST_SEED, CLIPS, guidance_from_t=guidance_from_t,
                                text_weight=models.INTERPOLATION_TEXT_WEIGHT)
    items = interp_eval.clips(interp_eval.TEST_SEED, CLIPS)
    first_only = renderer.animate_many(WEIGHTS / models.ANIMATION_FILE, [video[0] for _, video in items],
                                       [spec.caption for spec, _ in items], [0] * CLIPS, frames=models.FRAMES,
                                       guidance_from_t=guidance_from_t)
    animation = [interp_eval.between_scores(video, truth) for video, (_, truth) in zip(first_only, items)]
    crossfade = interp_eval.crossfade_scores(renderer, WEIGHTS / models.ANIMATION_FILE, interp_eval.TEST_SEED, CLIPS)
    return {name: interp_eval.mean_of(values) for name, values in
            (("interpolation", ours), ("first_frame_only", animation), ("crossfade", crossfade))}


def test_the_last_frame_reaches_the_frames_between(scores):
    """F_I puts the object where the clip has it between the keyframes more often than F_A, which
    is given the first frame alone."""
    assert scores["interpolation"]["frames_right"] >= scores["first_frame_only"]["frames_right"] + 0.1, scores


@pytest.mark.xfail(strict=True, reason=CROSSFADE_SHORTFALL)
def test_the_interpolation_model_does_better_than_the_crossfade_it_starts_from(scores):
    assert scores["interpolation"]["frames_right"] >= scores["crossfade"]["frames_right"] + 0.1, scores


PAIR_SEEDS = (0, 1)
BETWEEN_SHORTFALL = ("on 12 held-out left/right keyframe pairs x 2 seeds, F_I's frames between show one object moving "
                     "between the keyframes in 17 of 24 videos (71%, with the Mini's text weight for F_I; 14 with the "
                     "nodes' 7.5; the issue asks 80%): it loses the object or changes its size in the others "
                     "(docs/keyframes.md)")


@pytest.fixture(scope="module")
def between_outcomes(renderer):
    """interp_eval.moves_between of F_I's videos and of the crossfade on the fixed held-out pairs
    (interp_eval.horizontal_pairs: the object at one side, then further to the other)."""
    pairs = interp_eval.horizontal_pairs()
    firsts, lasts = [video[0] for _, video in pairs], [video[-1] for _, video in pairs]
    captions = [spec.caption for spec, _ in pairs]
    ours = []
    for seed in PAIR_SEEDS:
        ours += [interp_eval.moves_between(video) for video in renderer.interpolate_many(
            INTERPOLATION, firsts, lasts, captions, [seed] * len(pairs), guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T,
            text_weight=models.INTERPOLATION_TEXT_WEIGHT)]
    crossfade = interp_eval.crossfade_videos(renderer, WEIGHTS / models.ANIMATION_FILE, [video for _, video in pairs])
    return {"interpolation": ours, "crossfade": [interp_eval.moves_between(video) for video in crossfade],
            "truth": [interp_eval.moves_between(video) for _, video in pairs]}


def _rate(outcomes) -> float:
    return sum(outcome == "ok" for outcome in outcomes) / len(outcomes)


def test_the_frames_between_move_from_one_keyframe_to_the_other_more_often_than_the_crossfade(between_outcomes):
    assert _rate(between_outcomes["truth"]) == 1.0, between_outcomes  # the reading holds on the world's own clips
    assert _rate(between_outcomes["interpolation"]) >= _rate(between_outcomes["crossfade"]) + 0.3, between_outcomes


@pytest.mark.xfail(strict=True, reason=BETWEEN_SHORTFALL)
def test_the_frames_between_move_from_one_keyframe_to_the_other_in_most_pairs(between_outcomes):
    assert _rate(between_outcomes["interpolation"]) >= 0.8, between_outcomes


def test_the_interpolation_model_lands_on_both_keyframes(renderer):
    (spec, truth), = interp_eval.clips(interp_eval.TEST_SEED, 1)
    (video,) = renderer.interpolate_many(INTERPOLATION, [truth[0]], [truth[-1]], [spec.caption], [0])
    first, last = interp_eval.frame_objects(video[[0, -1]]), interp_eval.frame_objects(truth[[0, -1]])
    assert all(interp_eval.frame_right(a, b) for a, b in zip(first, last))


def test_the_between_reading_rejects_a_path_that_goes_back_or_loses_the_object():
    from univg_core.evaluation.keyframe_studies import nearest_keyframe

    (_, truth), = interp_eval.horizontal_pairs(count=1)
    assert interp_eval.moves_between(truth) == "ok"
    reversed_middle = truth.copy()
    reversed_middle[1:-1] = truth[1:-1][::-1]
    assert interp_eval.moves_between(reversed_middle) == "backward"
    emptied = truth.copy()
    emptied[3] = truth[3, :1, :1]  # the frame filled with its corner's (background) colour
    assert interp_eval.moves_between(emptied) == "lost"
    nearest = nearest_keyframe(truth)
    assert (nearest[1:4] == truth[0]).all() and (nearest[4:7] == truth[-1]).all()
    assert (nearest[[0, -1]] == truth[[0, -1]]).all()
