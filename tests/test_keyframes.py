"""Keyframe conditioning (univg_core.diffusion.keyframes): the blend that is BGN's condition, the
two concat layouts, sampling through keyframes, and the interpolation task's training pairs."""

from __future__ import annotations

import pytest
import torch

from univg_core.diffusion import bgn, keyframes, pipelines
from univg_core.diffusion.schedule import make_alphas_cumprod
from univg_core.training.objective import TASKS, condition_latents, noisy_input_and_target


def _latent(seed: int, shape=(2, 4, 3, 3)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_blend_is_the_per_frame_linear_interpolation_of_the_keyframes():
    first, last = _latent(0), _latent(1)
    given = keyframes.keyframes_for("first_last", first, 5, last=last)
    blended = keyframes.blend(given)
    assert blended.shape == (2, 4, 5, 3, 3)
    for frame, share_of_last in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
        torch.testing.assert_close(blended[:, :, frame], (1 - share_of_last) * first + share_of_last * last)
    # three keyframes: each frame blends its two neighbours; frames outside hold the nearest
    middle = _latent(2)
    three = keyframes.Keyframes(torch.stack([first, middle, last], dim=2), (1, 3, 6), 8)
    blended = keyframes.blend(three)
    torch.testing.assert_close(blended[:, :, 0], first)
    torch.testing.assert_close(blended[:, :, 2], (first + middle) / 2)
    torch.testing.assert_close(blended[:, :, 4], middle * 2 / 3 + last / 3)
    torch.testing.assert_close(blended[:, :, 7], last)
    assert torch.allclose(keyframes.blend_weights((1, 3, 6), 8).sum(1), torch.ones(8, dtype=torch.float64))


def test_one_keyframe_at_frame_0_is_the_animation_models_condition_in_both_layouts_it_allows():
    first = _latent(3)
    given = keyframes.keyframes_for("first", first, 6)
    repeated = first.unsqueeze(2).expand(-1, -1, 6, -1, -1)
    assert torch.equal(keyframes.blend(given), repeated)
    assert torch.equal(keyframes.concat_latent(given, "repeat"), repeated)
    sparse = keyframes.concat_latent(given, "sparse")
    assert torch.equal(sparse[:, :, 0], first) and not sparse[:, :, 1:].any()


def test_first_last_and_loop_use_the_sparse_layout_zeros_between_the_ends():
    first, last = _latent(4), _latent(5)
    concat = keyframes.concat_latent(keyframes.keyframes_for("first_last", first, 4, last=last), "sparse")
    assert torch.equal(concat[:, :, 0], first) and torch.equal(concat[:, :, 3], last) and not concat[:, :, 1:3].any()
    loop = keyframes.keyframes_for("loop", first, 4)
    assert loop.positions == (0, 3) and torch.equal(keyframes.concat_latent(loop, "sparse")[:, :, 3], first)
    with pytest.raises(ValueError, match="repeat layout .* one keyframe at frame 0"):
        keyframes.concat_latent(loop, "repeat")


@pytest.mark.parametrize("make, message", [
    (lambda: keyframes.keyframes_for("middle", _latent(0), 4), "keyframe mode must be one of"),
    (lambda: keyframes.keyframes_for("first_last", _latent(0), 4), "needs the last frame"),
    (lambda: keyframes.keyframes_for("first_last", _latent(0), 1, last=_latent(1)), "at least 2 frames"),
    (lambda: keyframes.keyframes_for("first_last", _latent(0), 4, last=_latent(1, (2, 4, 5, 5))), "differs from the first"),
    (lambda: keyframes.Keyframes(_latent(0).unsqueeze(2).repeat(1, 1, 2, 1, 1), (3, 1), 4), "distinct, ascending"),
    (lambda: keyframes.Keyframes(_latent(0).unsqueeze(2), (4,), 4), r"in \[0, 3\]"),
    (lambda: keyframes.Keyframes(_latent(0).unsqueeze(2), (0, 1), 4), "1 keyframe latents for 2 positions"),
])
def test_bad_keyframes_are_refused_saying_what_was_expected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _recording_denoiser(seen: list):
    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), int(t.flatten()[0])))
        return torch.zeros_like(x[:, : x.shape[1] // 2])
    return denoise


def test_sampling_through_first_and_last_starts_from_their_blend_reads_the_sparse_concat_and_ends_on_both():
    alphas_cumprod = make_alphas_cumprod()
    first, last = _latent(6, (1, 4, 3, 3)), _latent(7, (1, 4, 3, 3))
    given = keyframes.keyframes_for("first_last", first, 6, last=last)
    noise = _latent(8, (1, 4, 6, 3, 3))
    seen: list = []
    video = pipelines.animate_keyframes(_recording_denoiser(seen), given, "sparse", alphas_cumprod, "eps", steps=4,
                                        t_n=900, sampler="ddim", noise=noise)
    start, t_first = seen[0]
    assert t_first == 900
    torch.testing.assert_close(start[:, :4], bgn.inference_start(keyframes.blend(given), noise, 900, alphas_cumprod))
    for x, _ in seen:
        assert torch.equal(x[:, 4:], keyframes.concat_latent(given, "sparse"))
    assert torch.equal(video[:, :, 0], first) and torch.equal(video[:, :, 5], last)
    # the frames between are the sampler's, not the keyframes
    assert not torch.equal(video[:, :, 2], first)


def test_animate_is_sampling_through_the_first_frame_in_the_repeat_layout():
    alphas_cumprod = make_alphas_cumprod()
    first = _latent(9, (1, 4, 3, 3))
    noise = _latent(10, (1, 4, 5, 3, 3))

    def denoise(x, t):
        return 0.1 * x[:, :4] + 0.05 * x[:, 4:]

    video = pipelines.animate(denoise, first, 5, alphas_cumprod, "eps", steps=5, noise=noise)
    through = pipelines.animate_keyframes(denoise, keyframes.keyframes_for("first", first, 5), "repeat",
                                          alphas_cumprod, "eps", steps=5, noise=noise)
    assert torch.equal(video, through) and torch.equal(video[:, :, 0], first)


def test_the_interpolation_task_trains_towards_the_ends_blend_with_the_sparse_concat():
    spec = TASKS["interpolation"]
    abar = make_alphas_cumprod()
    v_target = _latent(11, (3, 4, 5, 4, 4))
    eps = _latent(12, v_target.shape)
    condition = condition_latents(spec, v_target, None)
    expected = keyframes.blend(keyframes.keyframes_for("first_last", v_target[:, :, 0], 5, last=v_target[:, :, -1]))
    assert torch.equal(condition, expected)
    t = torch.tensor([100, 800, 990])
    x, target = noisy_input_and_target(spec, v_target, condition, eps, t, abar, spec.bgn_window)
    biased_x, biased = bgn.q_sample_bgn(v_target, expected, eps, t, *spec.bgn_window, abar)
    torch.testing.assert_close(x[:, :4], biased_x)
    torch.testing.assert_close(target, biased)
    assert torch.equal(x[:, 4:, 0], v_target[:, :, 0]) and torch.equal(x[:, 4:, -1], v_target[:, :, -1])
    assert not x[:, 4:, 1:-1].any()
    # at the ends the condition is the clip itself: BGN adds no bias there
    torch.testing.assert_close(biased[:, :, 0], eps[:, :, 0])


def test_a_bgn_window_moves_to_the_timesteps_of_equal_signal_to_noise_on_a_zero_terminal_snr_schedule():
    sd, zero_terminal = make_alphas_cumprod(), make_alphas_cumprod(zero_terminal_snr=True)
    assert bgn.snr_matched_window((600, 990), sd, sd) == (600, 990)
    assert bgn.snr_matched_window((600, 990), sd, zero_terminal) == (567, 875)
    assert bgn.snr_matched_window((0, 700), sd, zero_terminal) == (0, 656)
    # the matched end holds as much of the condition as the paper's end on SD's schedule
    assert abs(float(zero_terminal[875].sqrt()) - float(sd[990].sqrt())) < 0.002
