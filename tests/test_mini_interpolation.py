"""What UniVG Mini's F_I does (issue 38): given a held-out clip's first and last frames, the frames
between show one object of the clip's colour and size where the clip has it, more often than the
crossfade it starts from; scored by the world's detector (univg_core.mini.interp_eval) on clips of
a seed that no choice was made on."""

from __future__ import annotations

from pathlib import Path

import pytest

from univg_core.cli.install_mini import WEIGHTS
from univg_core.mini import interp_eval, models, towers
from univg_core.mini.render import MiniRenderer

TOWERS = Path(__file__).resolve().parent.parent / ".cache" / "mini" / "towers"
INTERPOLATION = WEIGHTS / models.INTERPOLATION_FILE
CLIPS = 8


@pytest.fixture(scope="module")
def renderer():
    text_file, _ = towers.write_towers(TOWERS, TOWERS)  # kept when already built
    return MiniRenderer(text_file, WEIGHTS / models.VAE_FILE)


@pytest.fixture(scope="module")
def scores(renderer):
    ours = interp_eval.evaluate(renderer, INTERPOLATION, interp_eval.TEST_SEED, CLIPS,
                                guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T)
    crossfade = interp_eval.crossfade_scores(renderer, WEIGHTS / models.ANIMATION_FILE, interp_eval.TEST_SEED, CLIPS)
    return interp_eval.mean_of(ours), interp_eval.mean_of(crossfade)


def test_the_interpolation_model_draws_one_object_where_the_clip_has_it_between_the_keyframes(scores):
    ours, crossfade = scores
    assert ours["frames_right"] >= MIN_FRAMES_RIGHT, (ours, crossfade)
    assert ours["frames_right"] > crossfade["frames_right"] + MIN_GAIN_OVER_CROSSFADE, (ours, crossfade)


def test_the_interpolation_model_lands_on_both_keyframes(renderer):
    (spec, truth), = interp_eval.clips(interp_eval.TEST_SEED, 1)
    (video,) = renderer.interpolate_many(INTERPOLATION, [truth[0]], [truth[-1]], [spec.caption], [0])
    first, last = interp_eval.frame_objects(video[[0, -1]]), interp_eval.frame_objects(truth[[0, -1]])
    assert all(interp_eval.frame_right(a, b) for a, b in zip(first, last))
