"""BGN-consistent sampling (issue 37): with an oracle network that knows the clean sample, every
state the BGN-consistent DDIM and DPM-Solver++ reach lies on the BGN forward marginal of its
timestep (the same noise throughout), where the plain samplers keep only part of the bias; below
the window they are the plain samplers."""

from __future__ import annotations

import pytest
import torch

from univg_core.diffusion.bgn import bgn_weight, q_sample_bgn
from univg_core.diffusion.bgn_sampling import bgn_consistent_sample
from univg_core.diffusion.samplers import make_timesteps, sample
from univg_core.diffusion.schedule import make_alphas_cumprod, rescale_zero_terminal_snr, v_from_x0_eps

SHAPE = (1, 4, 3, 6, 6)


def schedules():
    sd = make_alphas_cumprod().double()
    return {"eps": sd, "v": rescale_zero_terminal_snr(sd)}


def oracle(x0: torch.Tensor, abar: torch.Tensor, prediction: str):
    """The network output that gives exactly x0 back at any state: eps' (or v) of x_t about x0."""

    def denoise(x_t, t):
        a = abar[int(t[0])]
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return eps if prediction == "eps" else v_from_x0_eps(x0, eps, a)

    return denoise


def on_marginal_distance(x, x0, v_cond, eps, abar_value, t, t_m, t_n):
    weight = float(bgn_weight(t, t_m, t_n))
    mean = abar_value ** 0.5 * ((1 - weight) * x0 + weight * v_cond)
    return float((x - mean - (1 - abar_value) ** 0.5 * eps).abs().max())


def retained_bias(x, x0, v_cond, eps, abar_value, t, t_m, t_n) -> float:
    """The share of the BGN marginal's bias alpha w (v_C - x0) that the state x carries."""
    weight = float(bgn_weight(t, t_m, t_n))
    plain = abar_value ** 0.5 * x0 + (1 - abar_value) ** 0.5 * eps
    direction = abar_value ** 0.5 * weight * (v_cond - x0)
    return float(((x - plain) * direction).sum() / (direction * direction).sum())


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
@pytest.mark.parametrize("window", [(600, 990), (567, 875), (0, 700)])
def test_every_state_is_on_the_bgn_marginal_where_the_plain_sampler_loses_bias(prediction, sampler, window):
    t_m, t_n = window
    abar = schedules()[prediction]
    generator = torch.Generator().manual_seed(0)
    x0, v_cond, eps = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(3))
    start, _ = q_sample_bgn(x0, v_cond, eps, torch.tensor([t_n]), t_m, t_n, abar)
    timesteps = make_timesteps(7, "uniform_trailing", t_start=t_n)
    states = {"consistent": [], "plain": []}

    def keep(name):
        return lambda step, total, x, _: states[name].append(x.clone())

    out = bgn_consistent_sample(sampler, oracle(x0, abar, prediction), start, abar, timesteps, prediction, v_cond,
                                t_m, t_n, callback=keep("consistent"))
    sample(sampler, oracle(x0, abar, prediction), start, abar, timesteps, prediction, callback=keep("plain"),
           final_step="clean")
    assert float((out - x0).abs().max()) < 1e-6
    for state, t in zip(states["consistent"], timesteps.tolist()[1:]):
        assert on_marginal_distance(state, x0, v_cond, eps, float(abar[t]), t, t_m, t_n) < 1e-6, t
    inside = [(state, t) for state, t in zip(states["plain"], timesteps.tolist()[1:]) if t_m < t < t_n]
    assert inside
    kept = [retained_bias(state, x0, v_cond, eps, float(abar[t]), t, t_m, t_n) for state, t in inside]
    assert max(abs(share - 1) for share in kept) > 0.05, kept  # off the marginal the model was trained on


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_below_the_window_it_is_the_plain_sampler(sampler):
    abar = schedules()["v"]
    generator = torch.Generator().manual_seed(1)
    x, v_cond = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(2))
    weights = torch.randn(4, 4, dtype=torch.float64, generator=generator) * 0.1

    def network(x_t, t):
        return torch.einsum("oc,bcthw->bothw", weights, x_t) * (1 + t[0] / 1000)

    timesteps = make_timesteps(6, "uniform_trailing", t_start=500)
    ours = bgn_consistent_sample(sampler, network, x, abar, timesteps, "v", v_cond, 600, 990)
    plain = sample(sampler, network, x, abar, timesteps, "v", final_step="clean")
    assert torch.allclose(ours, plain, atol=1e-10)


def test_a_sampler_it_cannot_follow_is_refused():
    abar = schedules()["v"]
    with pytest.raises(ValueError, match="BGN-consistent sampling runs ddim, dpmpp_2m"):
        bgn_consistent_sample("euler", lambda x, t: x, torch.zeros(SHAPE), abar, [500, 0], "v", torch.zeros(SHAPE),
                              600, 990)


@pytest.mark.parametrize("changes, message", [
    (dict(bgn_sampling="exact"), "bgn_sampling must be one of"),
    (dict(bgn_sampling="consistent", scale_arr=torch.ones(1000)), "scales its clean-sample estimate"),
    (dict(bgn_sampling="consistent", sampler="ddim", eta=0.5), "set DDIM's eta to 0"),
])
def test_the_pipeline_refuses_what_consistent_sampling_cannot_follow(changes, message):
    from univg_core.diffusion import keyframes, pipelines

    given = keyframes.keyframes_for("first", torch.zeros(1, 4, 6, 6), 3)
    with pytest.raises(ValueError, match=message):
        pipelines.animate_keyframes(lambda x, t: x[:, :4], given, "repeat", schedules()["v"], "v", steps=3, **changes)


def test_the_upscalers_auto_choice_follows_whether_the_model_was_trained_with_bgn():
    from univg_core.diffusion.pipelines import super_resolution_sampling

    assert super_resolution_sampling("auto", trained_with_bgn=True) == "consistent"
    assert super_resolution_sampling("auto", trained_with_bgn=False) == "plain"
    assert super_resolution_sampling("plain", trained_with_bgn=True) == "plain"
    assert super_resolution_sampling("consistent", trained_with_bgn=False) == "consistent"
    with pytest.raises(ValueError, match="auto or one of"):
        super_resolution_sampling("biased", trained_with_bgn=True)
