"""Schedules, conversions, BGN, guidance and samplers: tests that fail for a real reason."""

import math

import pytest
import torch

from univg_core.diffusion import bgn, guidance, schedule
from univg_core.diffusion.samplers import SamplingCancelled, ddim_sample, dpmpp_2m_sample, make_timesteps, sample


def test_linear_schedule_is_square_of_linspace_of_roots():
    betas = schedule.make_betas()
    assert betas[0].item() == pytest.approx(0.00085) and betas[-1].item() == pytest.approx(0.012)
    middle = ((0.00085**0.5 + 0.012**0.5) / 2) ** 2
    assert schedule.make_betas(timesteps=3)[1].item() == pytest.approx(middle)
    assert torch.all(betas[1:] > betas[:-1])


def test_zero_terminal_snr_keeps_shape():
    plain = schedule.make_alphas_cumprod()
    zero = schedule.make_alphas_cumprod(zero_terminal_snr=True)
    assert zero[-1].item() == 0.0
    assert zero[0].item() == pytest.approx(plain[0].item(), rel=1e-12)
    assert torch.all(zero[1:] < zero[:-1])  # still monotone
    # sqrt(abar) is an affine map of the original: correlation 1
    a, b = plain.sqrt()[:-1], zero.sqrt()[:-1]
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1]
    assert corr.item() == pytest.approx(1.0, abs=1e-12)


def test_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 4, 3, 5, 5, generator=g)
    abar = torch.tensor([0.9, 0.1])
    x_t = schedule.q_sample(x0, eps, abar)
    v = schedule.v_from_x0_eps(x0, eps, abar)
    torch.testing.assert_close(schedule.x0_from_v(x_t, v, abar), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(schedule.eps_from_v(x_t, v, abar), eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(schedule.x0_from_eps(x_t, eps, abar), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(schedule.eps_from_x0(x_t, x0, abar), eps, atol=1e-5, rtol=1e-5)
    for prediction, output in (("eps", eps), ("v", v)):
        got_x0, got_eps = schedule.x0_eps_from_output(output, x_t, abar, prediction)
        torch.testing.assert_close(got_x0, x0, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_eps, eps, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="zero-SNR"):
        schedule.x0_eps_from_output(eps, x_t, torch.tensor([0.0, 0.5]), "eps")


def test_offset_noise_adds_a_per_channel_constant():
    g = torch.Generator().manual_seed(0)
    noise = schedule.offset_noise((64, 4, 8, 16, 16), 0.1, generator=g)
    per_channel_mean = noise.mean(dim=(2, 3, 4))
    # the constant's std is 0.1; the mean of 2048 unit normals alone would have std 0.022
    assert 0.08 < per_channel_mean.std().item() < 0.12
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        schedule.offset_noise((1, 1, 1, 1, 1), 1.5)


def test_scale_arr():
    arr = schedule.make_scale_arr(0.7)
    assert arr[0] == 1.0 and arr[399].item() == pytest.approx(0.7) and torch.all(arr[400:] == 0.7)
    assert torch.all(schedule.make_scale_arr(None) == 1)


# ------------------------------------------------------------------------ BGN


def test_bgn_boundaries_and_linearity():
    ac = schedule.make_alphas_cumprod()
    g = torch.Generator().manual_seed(1)
    v_target, v_cond, eps = (torch.randn(3, 4, 2, 6, 6, generator=g) for _ in range(3))
    t_m, t_n = 600, 990

    def q(t):
        return bgn.q_sample_bgn(v_target, v_cond, eps, torch.full((3,), t), t_m, t_n, ac)[0]

    torch.testing.assert_close(q(t_m), schedule.q_sample(v_target, eps, ac[t_m]))
    torch.testing.assert_close(q(t_n), schedule.q_sample(v_cond, eps, ac[t_n]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q(999), schedule.q_sample(v_cond, eps, ac[999]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q(100), schedule.q_sample(v_target, eps, ac[100]))
    # in between: the formula of paper 3.4
    t = 795
    w = (t - t_m) / (t_n - t_m)
    expected_eps = eps + (ac[t].sqrt() / (1 - ac[t]).sqrt()).item() * w * (v_cond - v_target)
    got_eps = bgn.biased_noise(eps, v_cond, v_target, torch.full((3,), t), t_m, t_n, ac)
    torch.testing.assert_close(got_eps, expected_eps)
    # the mean of v_t interpolates linearly between target and condition
    torch.testing.assert_close(
        q(t) - (1 - ac[t]).sqrt().item() * eps, ac[t].sqrt().item() * ((1 - w) * v_target + w * v_cond)
    )


def test_bgn_training_target_recovers_the_target():
    ac = schedule.make_alphas_cumprod(zero_terminal_snr=True)
    g = torch.Generator().manual_seed(2)
    v_target, v_cond, eps = (torch.randn(2, 4, 2, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([300, 650])
    v_t, biased = bgn.q_sample_bgn(v_target, v_cond, eps, t, 0, 700, ac)
    for prediction in ("eps", "v"):
        target = bgn.training_target(v_target, biased, t, ac, prediction)
        x0, _ = schedule.x0_eps_from_output(target, v_t, ac[t], prediction)
        torch.testing.assert_close(x0, v_target, atol=1e-4, rtol=1e-4)


def test_bgn_bad_windows():
    ac = schedule.make_alphas_cumprod()
    x = torch.zeros(1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="t_m < t_n"):
        bgn.biased_noise(x, x, x, torch.tensor([5]), 700, 700, ac)
    with pytest.raises(ValueError, match="t_m=-1"):
        bgn.biased_noise(x, x, x, torch.tensor([5]), -1, 700, ac)
    with pytest.raises(ValueError, match="t_n"):
        bgn.inference_start(x, x, 1000, ac)


# ------------------------------------------------------------------- guidance


def test_multi_condition_guidance_is_linear_and_ignores_zero_weights():
    g = torch.Generator().manual_seed(3)
    null, text, image = (torch.randn(2, 3, generator=g) for _ in range(3))
    out = guidance.multi_condition(null, text, image, 2.0, 3.0)
    torch.testing.assert_close(out, null + 2 * (text - null) + 3 * (image - null))
    # linear in each weight
    a = guidance.multi_condition(null, text, image, 1.0, 3.0)
    b = guidance.multi_condition(null, text, image, 3.0, 3.0)
    torch.testing.assert_close(out, (a + b) / 2)


def test_guided_denoiser_with_w_image_zero_ignores_the_image():
    calls = []

    def model(x, t, text, image):
        calls.append(x.shape[0])
        shift = text.mean(dim=(1, 2)) + (0 if image is None else image.mean(dim=(1, 2)) * 5)
        return x * 0.5 + shift.view(-1, 1, 1, 1, 1)

    x, t = torch.randn(2, 4, 3, 4, 4), torch.tensor([10, 10])
    null_text, text = torch.zeros(1, 77, 8), torch.ones(1, 77, 8)
    grey, image_a, image_b = torch.zeros(1, 16, 8), torch.full((1, 16, 8), 2.0), torch.full((1, 16, 8), -7.0)

    def guided(image, w_text, w_image):
        conditions = {
            "null": guidance.Condition(null_text, grey),
            "text": guidance.Condition(text, grey),
            "image": guidance.Condition(null_text, image),
        }
        return guidance.make_guided_denoiser(model, "multi", conditions, w_text, w_image)(x, t)

    torch.testing.assert_close(guided(image_a, 7.5, 0.0), guided(image_b, 7.5, 0.0))
    assert calls[-1] == 4  # null and text batched in one call, the image branch skipped
    assert (guided(image_a, 7.5, 1.0) - guided(image_b, 7.5, 1.0)).abs().max() > 1
    # w_T = 0: the text has no effect
    def guided_text(text_tokens):
        conditions = {"null": guidance.Condition(null_text, grey), "image": guidance.Condition(null_text, image_a),
                      "text": guidance.Condition(text_tokens, grey)}
        return guidance.make_guided_denoiser(model, "multi", conditions, 0.0, 2.0)(x, t)
    torch.testing.assert_close(guided_text(text), guided_text(text * 9))
    assert calls[-1] == 4


def test_guidance_batches_one_call_and_falls_back_for_ragged_prompts():
    calls = []

    def model(x, t, text, image):
        calls.append(text.shape)
        return x + text.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)

    x, t = torch.zeros(1, 1, 1, 1, 1), torch.tensor([3])
    same = {"uncond": guidance.Condition(torch.zeros(1, 77, 2)), "cond": guidance.Condition(torch.ones(1, 77, 2))}
    out = guidance.make_guided_denoiser(model, "cfg", same, 4.0)(x, t)
    assert calls == [torch.Size([2, 77, 2])] and out.item() == pytest.approx(4.0)
    calls.clear()
    ragged = {"uncond": guidance.Condition(torch.zeros(1, 77, 2)), "cond": guidance.Condition(torch.ones(1, 154, 2))}
    out = guidance.make_guided_denoiser(model, "cfg", ragged, 4.0)(x, t)
    assert len(calls) == 2 and out.item() == pytest.approx(4.0)


def test_rescale_and_nested():
    g = torch.Generator().manual_seed(4)
    cond, guided = torch.randn(2, 4, 8, generator=g), 3 * torch.randn(2, 4, 8, generator=g)
    full = guidance.rescale(guided, cond, 1.0)
    torch.testing.assert_close(full.std(dim=(1, 2)), cond.std(dim=(1, 2)))
    half = guidance.rescale(guided, cond, 0.7)
    torch.testing.assert_close(half, 0.7 * full + 0.3 * guided)
    null, image_only, both = (torch.randn(3, generator=g) for _ in range(3))
    torch.testing.assert_close(
        guidance.nested_text_image(null, image_only, both, 7.5, 1.2),
        null + 1.2 * (image_only - null) + 7.5 * (both - image_only),
    )
    with pytest.raises(ValueError, match="missing"):
        guidance.make_guided_denoiser(lambda *a: None, "multi", {"null": None}, 7.5, 1.0)


# ------------------------------------------------------------------- samplers


def test_timestep_spacings():
    assert make_timesteps(50, "uniform").tolist()[:3] == [981, 961, 941]
    assert make_timesteps(50, "uniform").tolist()[-1] == 1
    assert make_timesteps(50, "uniform_trailing").tolist()[:3] == [999, 979, 959]
    assert make_timesteps(50, "uniform_trailing").tolist()[-1] == 19
    assert make_timesteps(7, "uniform_trailing", t_start=700).tolist() == [700, 600, 500, 400, 299, 199, 99]
    for bad in (dict(steps=0), dict(steps=1001), dict(steps=5, t_start=1000), dict(steps=5, spacing="karras")):
        with pytest.raises(ValueError):
            make_timesteps(**{"spacing": "uniform", **bad})


def _gaussian_denoiser(mu, s, ac, prediction):
    """The exact denoiser for x0 ~ N(mu, s^2): E[x0 | x_t], as an eps- or v-output."""

    def denoise(x, t):
        abar = ac[t[0]].item()
        a, sigma = math.sqrt(abar), math.sqrt(1 - abar)
        x0 = mu + a * s**2 / (a**2 * s**2 + sigma**2) * (x - a * mu)
        if prediction == "eps":
            return schedule.eps_from_x0(x, x0, abar)
        return schedule.v_from_x0_eps(x0, schedule.eps_from_x0(x, x0, abar), abar)

    return denoise


@pytest.mark.parametrize("prediction,zero_snr", [("eps", False), ("v", True)])
def test_solvers_converge_on_gaussian_target(prediction, zero_snr):
    """For x0 ~ N(mu, s^2) the probability-flow ODE keeps z = (x_t - a mu) / sqrt(a^2 s^2 + sigma^2)
    constant, so the exact state at t = 0 is known. Steps are uniform in log-SNR; the state
    reached at t = 0 (before the final denoise to abar = 1) is compared."""
    ac = schedule.make_alphas_cumprod(zero_terminal_snr=zero_snr)
    log_snr = 0.5 * torch.log(ac / (1 - ac))
    mu, s = 0.7, 0.5
    g = torch.Generator().manual_seed(5)
    t_top = 990
    x_T = torch.randn(4, 2, 2, 3, 3, generator=g, dtype=torch.float64)
    denoise = _gaussian_denoiser(mu, s, ac, prediction)

    def exact(t):
        a, sigma = ac[t].sqrt().item(), (1 - ac[t]).sqrt().item()
        return a * mu + math.sqrt(a**2 * s**2 + sigma**2) * z

    a_T, sigma_T = ac[t_top].sqrt().item(), (1 - ac[t_top]).sqrt().item()
    z = (x_T - a_T * mu) / math.sqrt(a_T**2 * s**2 + sigma_T**2)
    errors = {}
    for steps in (10, 20, 40, 80):
        targets = torch.linspace(log_snr[t_top].item(), log_snr[0].item(), steps + 1)
        ts = torch.unique_consecutive(torch.stack([(log_snr - v).abs().argmin() for v in targets]))
        for solver in (ddim_sample, dpmpp_2m_sample):
            states = []
            solver(denoise, x_T.clone(), ac, ts, prediction, callback=lambda i, n, x, x0: states.append(x))
            errors[solver.__name__, steps] = (states[-2] - exact(0)).abs().max().item()
    for solver in ("ddim_sample", "dpmpp_2m_sample"):
        series = [errors[solver, n] for n in (10, 20, 40, 80)]
        assert all(b < a for a, b in zip(series, series[1:])), (solver, series)
    # first order halves the error per halving of the step, second order about quarters it
    assert errors["ddim_sample", 40] / errors["ddim_sample", 80] > 1.7
    assert errors["dpmpp_2m_sample", 20] / errors["dpmpp_2m_sample", 40] > 2.8
    assert errors["dpmpp_2m_sample", 20] < errors["ddim_sample", 20] / 5
    assert errors["dpmpp_2m_sample", 80] < 2e-3


def test_ddim_with_perfect_denoiser_returns_x0():
    ac = schedule.make_alphas_cumprod()
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(2, 4, 3, 4, 4, generator=g)
    for prediction in ("eps", "v"):
        def denoise(x, t):
            abar = ac[t[0]].item()
            eps = schedule.eps_from_x0(x, x0, abar)
            return eps if prediction == "eps" else schedule.v_from_x0_eps(x0, eps, abar)

        for eta in (0.0, 1.0):
            out = ddim_sample(denoise, torch.randn(x0.shape, generator=g), ac, make_timesteps(10), prediction,
                              eta=eta, generator=g, final_step="clean")
            torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
        # lvdm's last step stops at alphas_cumprod[0]: on the deterministic path that is x0 noised
        # to t = 0 by the noise the trajectory started from
        ts = make_timesteps(10)
        x_start = torch.randn(x0.shape, generator=g)
        eps_star = schedule.eps_from_x0(x_start, x0, ac[ts[0]].item())
        out = ddim_sample(denoise, x_start, ac, ts, prediction)
        torch.testing.assert_close(out, schedule.q_sample(x0, eps_star, ac[0].item()), atol=1e-4, rtol=1e-4)
        assert (out - x0).abs().max() > 1e-3


def test_scale_arr_is_honoured():
    """A model trained on x0 * scale_arr[t] predicts that; the sampler still lands on x0."""
    ac = schedule.make_alphas_cumprod()
    scale_arr = schedule.make_scale_arr(0.7)
    x0 = torch.full((1, 1, 2, 2, 2), 0.5)

    def denoise(x, t):
        abar = ac[t[0]].item()
        scaled = x0 * scale_arr[t[0]].item()
        return schedule.eps_from_x0(x, scaled, abar)

    for name in ("ddim", "dpmpp_2m"):
        out = sample(name, denoise, torch.randn(x0.shape), ac, make_timesteps(10), "eps", scale_arr=scale_arr,
                     final_step="clean")
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_progress_cancel_and_nan():
    ac = schedule.make_alphas_cumprod()
    seen = []
    ts = make_timesteps(5)

    def callback(step, total, x, x0):
        seen.append((step, total))
        return step < 2  # cancel after the third step

    with pytest.raises(SamplingCancelled, match="3/5"):
        dpmpp_2m_sample(lambda x, t: torch.zeros_like(x), torch.randn(1, 1, 1, 2, 2), ac, ts, "eps", callback=callback)
    assert seen == [(0, 5), (1, 5), (2, 5)]

    class Interrupted(Exception):
        pass

    def interrupt(step, total, x, x0):
        raise Interrupted()

    with pytest.raises(Interrupted):
        ddim_sample(lambda x, t: torch.zeros_like(x), torch.randn(1, 1, 1, 2, 2), ac, ts, "eps", callback=interrupt)
    with pytest.raises(FloatingPointError, match="NaN/inf at step 0"):
        ddim_sample(lambda x, t: x * float("nan"), torch.randn(1, 1, 1, 2, 2), ac, ts, "eps")


def test_seeded_runs_are_bit_reproducible():
    ac = schedule.make_alphas_cumprod()

    def run():
        g = torch.Generator().manual_seed(7)
        x = torch.randn(1, 2, 3, 4, 4, generator=g)
        return ddim_sample(lambda x, t: torch.tanh(x), x, ac, make_timesteps(8), "eps", eta=1.0, generator=g)

    assert torch.equal(run(), run())


def test_guidance_from_t_guides_only_at_high_noise():
    """Below guidance_from_t every nonzero weight is 1: the text branch alone for text guidance,
    text + image - null for both; at and above it, the weights given."""
    def model(x, t, text, image):
        shift = text.mean(dim=(1, 2)) + (0 if image is None else image.mean(dim=(1, 2)))
        return x * 0 + shift.view(-1, 1, 1, 1, 1)

    x = torch.randn(1, 4, 2, 3, 3)
    conditions = {"null": guidance.Condition(torch.zeros(1, 77, 8), torch.zeros(1, 4, 8)),
                  "text": guidance.Condition(torch.ones(1, 77, 8), torch.zeros(1, 4, 8)),
                  "image": guidance.Condition(torch.zeros(1, 77, 8), torch.full((1, 4, 8), 2.0))}

    def at(t, w_text, w_image, from_t):
        denoise = guidance.make_guided_denoiser(model, "multi", conditions, w_text, w_image, guidance_from_t=from_t)
        return denoise(x, torch.tensor([t])).flatten()[0].item()

    # null 0, text 1, image 2
    assert at(500, 7.5, 0.0, 300) == 7.5 and at(300, 7.5, 0.0, 300) == 7.5
    assert at(299, 7.5, 0.0, 300) == 1.0  # the text branch itself
    assert at(299, 7.5, 3.0, 300) == 3.0 and at(500, 7.5, 3.0, 300) == 7.5 + 6.0
    assert at(0, 7.5, 0.0, 0) == 7.5  # 0: guided at every step
    # below it, CFG gives its cond (here the image's 2), DynamiCrafter's nested form its full branch (the text's 1)
    for rule, names, conditional in (("cfg", ("uncond", "cond"), 2.0), ("nested", ("null", "image_only", "full"), 1.0)):
        picked = {name: conditions[key] for name, key in zip(names, ("null", "image", "text"))}
        below = guidance.make_guided_denoiser(model, rule, picked, 7.5, 3.0, guidance_from_t=300)(x, torch.tensor([10]))
        assert below.flatten()[0].item() == conditional
    with pytest.raises(ValueError, match="guidance_from_t"):
        guidance.make_guided_denoiser(model, "multi", conditions, 7.5, 0.0, guidance_from_t=-1)


def test_weights_that_give_one_branch_run_only_that_branch():
    """CFG at scale 1, multi-condition guidance at (w_T 1, w_I 0) and below guidance_from_t for
    text alone equal their conditional prediction: one model call, its output exactly; a mix of
    branches (or a rescale to another branch) still runs them all."""
    calls = []

    def model(x, t, text, image):
        calls.append(x.shape[0])
        return x * 0 + text.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1) + (0 if image is None else image.mean())

    x = torch.randn(1, 4, 2, 3, 3)
    text = guidance.Condition(torch.full((1, 77, 8), 3.0))
    null = guidance.Condition(torch.zeros(1, 77, 8))
    assert guidance.single_branch("multi", 1.0, 0.0) == "text" and guidance.single_branch("nested", 1, 1) == "full"
    assert guidance.single_branch("multi", 1.0, 1.0) is None and guidance.single_branch("cfg", 7.5, 0) is None

    def run(rule, conditions, w_text, t=10, **options):
        calls.clear()
        out = guidance.make_guided_denoiser(model, rule, conditions, w_text, **options)(x, torch.tensor([t]))
        return out.flatten()[0].item(), list(calls)

    assert run("multi", {"null": null, "text": text}, 1.0) == (3.0, [1])
    assert run("cfg", {"uncond": null, "cond": text}, 1.0) == (3.0, [1])
    assert run("multi", {"null": null, "text": text}, 7.5, guidance_from_t=300) == (3.0, [1])
    assert run("multi", {"null": null, "text": text}, 7.5, t=300, guidance_from_t=300) == (22.5, [2])
    assert run("cfg", {"uncond": null, "cond": text}, 0.0, guidance_rescale=0.7)[1] == [2]  # rescaled to cond


@pytest.mark.parametrize("name", ["w_text", "w_image", "guidance_rescale"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_guidance_settings_are_refused_by_name(name, value):
    conditions = {key: guidance.Condition(torch.zeros(1, 2, 3), None) for key in ("null", "text", "image")}
    with pytest.raises(ValueError, match=f"{name} must be a finite number, got {value}"):
        guidance.make_guided_denoiser(lambda x, t, text, image: x, "multi", conditions, **{name: value})


def _nan_where_text_is_one(x, t, text, image):
    """A model whose output is NaN exactly for the conditions whose text is all ones."""
    poisoned = (text.flatten(1) == 1).all(dim=1).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(poisoned, torch.full_like(x, float("nan")), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_nan_during_sampling_names_its_branch_and_blames_fp16_only_in_fp16(dtype):
    conditions = {"null": guidance.Condition(torch.zeros(1, 2, 3), None),
                  "text": guidance.Condition(torch.ones(1, 2, 3), None)}
    model = lambda x, t, text, image: _nan_where_text_is_one(x, t, text, image).to(dtype)  # noqa: E731
    denoise = guidance.make_guided_denoiser(model, "multi", conditions, w_text=7.5)
    ac = schedule.make_alphas_cumprod()
    with pytest.raises(FloatingPointError) as failed:
        ddim_sample(denoise, torch.randn(1, 1, 1, 2, 2), ac, make_timesteps(5), "eps")
    message = str(failed.value)
    assert "NaN/inf in the text branch of the guidance at step 0" in message, message
    assert ("fp16 can overflow" in message) == (dtype == torch.float16), message


def test_a_nan_already_in_the_input_latent_is_named_as_such():
    ac = schedule.make_alphas_cumprod()
    start = torch.full((1, 1, 1, 2, 2), float("nan"))
    with pytest.raises(FloatingPointError, match="input latent already held NaN/inf at step 0"):
        ddim_sample(lambda x, t: x, start, ac, make_timesteps(5), "eps")


@pytest.mark.parametrize("family, expected", [
    ("videocrafter2_t2v_512", 999), ("videocrafter1_t2v_1024", 999), ("videocrafter1_i2v_512", 999),
    ("dynamicrafter_256", 990), ("dynamicrafter_512", 990), ("dynamicrafter_1024", 990),
    ("univg_base", 999), ("univg_animation", 990), ("univg_interpolation", 990), ("univg_sr", 700),
])
def test_the_start_timestep_is_one_rule_for_every_family(family, expected):
    """Every node and core path starts where `start_timestep` says: the file's BGN t_n, else the
    paper's for the task (an animation model 990, super-resolution 700), else pure noise."""
    import dataclasses

    from univg_core.configs import get_preset, start_timestep

    config = get_preset(family)
    assert start_timestep(config) == expected
    assert start_timestep(config, "super_resolution") == (config.bgn_t_n if config.bgn_t_n is not None else 700)
    assert start_timestep(config, "animation") == (config.bgn_t_n if config.bgn_t_n is not None else 990)
    own = dataclasses.replace(config, bgn_t_m=100, bgn_t_n=875)  # a file that names its window
    assert start_timestep(config, "interpolation") == start_timestep(config, "animation")
    assert {start_timestep(own, task) for task in (None, "base", "animation", "interpolation", "super_resolution")} == {875}
    with pytest.raises(ValueError, match="task must be one of"):
        start_timestep(config, "keyframes")
