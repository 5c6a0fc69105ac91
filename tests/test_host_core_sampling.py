"""UniVG models under ComfyUI's own sampling, on the real host: core samplers and schedulers
on every family, the same video as the UniVG nodes for the same seed, scale_arr honoured,
the multi-condition guider, the first-frame concat and the BGN sigmas.

Tiny configurations of the real modules (random weights), wrapped by the pack's own
loader code into the native MODEL, sampled by comfy.sample / comfy.samplers."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib

import pytest
import torch

from conftest import relative_error, tiny_models
from univg_core.checkpoints.loading import LoadedCheckpoint
from univg_core.diffusion import pipelines
from univg_core.models.memory import planned_activation_bytes
from univg_core.models.operations import TORCH_OPERATIONS, weight_layers

pytestmark = pytest.mark.host
FRAMES, SIZE = 4, 16  # latent pixels
FAMILIES = ["videocrafter2_t2v_512", "videocrafter1_i2v_512", "dynamicrafter_512", "univg_base",
            "univg_animation", "univg_sr"]


@pytest.fixture(scope="module")
def pack(host):
    loader = host.nodes.NODE_CLASS_MAPPINGS["UniVGCheckpointLoader"]
    name = loader.__module__.rsplit(".", 1)[0]
    return {part: importlib.import_module(f"{name}.{part}")
            for part in ("model", "samplers", "core_sampling", "conditioning", "native", "guidance")}


def make_patcher(pack, family: str, dtype: str = "fp32", host_layers: bool = False, **schedule_changes):
    """A tiny model of `family` in a MODEL; host_layers: built from ComfyUI's operations for
    `dtype`, as the UniVG Checkpoint Loader builds a file's."""
    operations = pack["model"].host_operations(dtype) if host_layers else TORCH_OPERATIONS
    config, unet, image_proj = tiny_models(family, operations=operations)
    with torch.no_grad():  # outputs of a trained model's size (eps ~ 1), not the random weights' ~100
        unet.out[-1].weight.mul_(0.02)
        unet.out[-1].bias.mul_(0.02)
    if schedule_changes:
        config = dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, **schedule_changes))
    return pack["model"].wrap_in_patcher(LoadedCheckpoint(family, config, unet, image_proj), dtype), config


def conditionings(pack, config, seed: int = 0):
    """(positive, negative) as UniVG Multi-Conditioning gives them: text tokens, and for image
    models the image's tokens and the null image's (the negative carries the null image)."""
    keys = pack["conditioning"]
    generator = torch.Generator().manual_seed(seed)
    width = config.unet.context_dim
    positive = [[torch.randn(1, 77, width, generator=generator), {}]]
    negative = [[torch.randn(1, 77, width, generator=generator), {}]]
    if config.image_proj is not None:
        tokens = torch.randn(1, 9, config.image_proj.embedding_dim, generator=generator)
        null = torch.randn(1, 9, config.image_proj.embedding_dim, generator=generator)
        positive[0][1].update({keys.IMAGE_TOKENS: tokens, keys.NULL_IMAGE_TOKENS: null})
        negative[0][1].update({keys.IMAGE_TOKENS: null, keys.NULL_IMAGE_TOKENS: null})
    if config.unet.in_channels == 2 * config.unet.out_channels:
        first = {keys.CONCAT_LATENT: torch.randn(1, 4, SIZE, SIZE, generator=generator)}
        positive, negative = keys.with_extras(positive, first), keys.with_extras(negative, first)
    return positive, negative


def core_sample(patcher, positive, negative, sampler, scheduler, steps=3, cfg=5.0, seed=0, latent=None):
    import comfy.sample

    latent = torch.zeros(FRAMES, 4, SIZE, SIZE) if latent is None else latent
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(patcher, noise, steps, cfg, sampler, scheduler, positive, negative, latent, seed=seed)


@pytest.mark.parametrize("family", FAMILIES)
def test_core_ksampler_renders_every_family_with_every_sampler_and_scheduler(pack, family):
    patcher, config = make_patcher(pack, family)
    positive, negative = conditionings(pack, config)
    results = {}
    for sampler in ("euler", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc"):
        for scheduler in ("karras", "simple", "normal"):
            video = core_sample(patcher, positive, negative, sampler, scheduler)
            assert video.shape == (FRAMES, 4, SIZE, SIZE) and torch.isfinite(video).all(), (sampler, scheduler)
            results[sampler, scheduler] = video
    again = core_sample(patcher, positive, negative, "dpmpp_2m_sde", "karras")
    torch.testing.assert_close(again, results["dpmpp_2m_sde", "karras"])  # the seed fixes the SDE's noise too
    assert not torch.allclose(results["euler", "karras"], results["euler", "simple"])  # the schedule matters


def test_core_dpmpp_2m_equals_the_univg_base_sampler_for_the_same_seed(pack):
    """Same seed, same sigmas (the trailing timesteps: core's 'simple'), w_T = cfg, w_I = 0:
    KSampler and UniVG Base Sampler give the same latents."""
    patcher, config = make_patcher(pack, "univg_sr", timestep_spacing="uniform_trailing", zero_terminal_snr=False)
    positive, negative = conditionings(pack, config)
    ours = pack["samplers"].UniVGBaseSampler().sample(
        patcher, positive, negative, seed=7, steps=5, text_weight=5.0, image_weight=0.0, frames=FRAMES, fps=8,
        sampler="dpmpp_2m", width=SIZE * 8, height=SIZE * 8)[0]["samples"]
    core = core_sample(patcher, positive, negative, "dpmpp_2m", "simple", steps=5, cfg=5.0, seed=7)
    assert core.abs().max() > 0.1
    torch.testing.assert_close(core, ours, rtol=0, atol=1e-4)


def test_core_euler_is_lvdm_ddim_with_scale_arr(pack):
    """DynamiCrafter's scale_arr (0.7, here on a v-prediction text model): Euler over sigma' =
    sigma / scale_arr is the original DDIM with its pred_x0 * s_prev / s_t step, so it equals
    the UniVG node's DDIM."""
    schedule = dict(zero_terminal_snr=False, scale_base=0.7, timestep_spacing="uniform_trailing")
    patcher, config = make_patcher(pack, "univg_sr", **schedule)
    positive, negative = conditionings(pack, config)
    arguments = dict(seed=3, steps=10, text_weight=4.0, image_weight=0.0, frames=FRAMES, fps=0, sampler="ddim",
                     width=SIZE * 8, height=SIZE * 8, ddim_final_step="clean")
    ours = pack["samplers"].UniVGBaseSampler().sample(patcher, positive, negative, **arguments)[0]["samples"]
    core = core_sample(patcher, positive, negative, "euler", "simple", steps=10, cfg=4.0, seed=3)
    torch.testing.assert_close(core, ours, rtol=0, atol=1e-4)
    unscaled, _ = make_patcher(pack, "univg_sr", **{**schedule, "scale_base": None})
    ignored = core_sample(unscaled, positive, negative, "euler", "simple", steps=10, cfg=4.0, seed=3)
    assert (ignored - ours).abs().max() > 1e-2  # what ignoring scale_arr would cost


def prepared_guider(pack, **optional):
    """UniVG Multi-Condition Guider (w_T 6, w_I 2.5) on a tiny univg_base, its conditions prepared
    as a sampler would, and an input x at sigma 2: (guider, x, sigma)."""
    import comfy.sampler_helpers
    import comfy.samplers

    patcher, config = make_patcher(pack, "univg_base")
    positive, negative = conditionings(pack, config)
    (guider,) = pack["core_sampling"].UniVGMultiConditionGuider().get_guider(
        patcher, positive, negative, 6.0, 2.5, 0.0, **optional)
    x = torch.randn(FRAMES, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 3
    conds = {name: [entry.copy() for entry in branch] for name, branch in guider.original_conds.items()}
    guider.inner_model, conds, _ = comfy.sampler_helpers.prepare_sampling(patcher, x.shape, conds, {})
    patcher.pre_run()
    guider.conds = comfy.samplers.process_conds(guider.inner_model, x, conds, "cpu", None, None, 0)
    return guider, x, torch.full((FRAMES,), 2.0)


@contextlib.contextmanager
def counted_model_calls(guider):
    """The batch size of every UNet call the guider makes inside the block."""
    calls = []
    real = guider.inner_model.diffusion_model.forward

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    guider.inner_model.diffusion_model.forward = counting
    try:
        yield calls
    finally:
        guider.inner_model.diffusion_model.forward = real


def test_the_guider_equals_univg_multi_condition_guidance_on_the_same_outputs(pack):
    import comfy.samplers

    from univg_core.diffusion.guidance import multi_condition

    guider, x, sigma = prepared_guider(pack)
    guided = guider.predict_noise(x, sigma)
    outputs = []
    for branch in ("null", "text", "image"):
        outputs.append(comfy.samplers.calc_cond_batch(guider.inner_model, [guider.conds[branch]], x, sigma, {})[0])
    expected = multi_condition(*outputs, 6.0, 2.5)
    torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-5)
    with counted_model_calls(guider) as calls:
        guider.predict_noise(x, sigma)
        guider.set_weights(0.0, 2.5, 0.0)
        image_guided = guider.predict_noise(x, sigma)
    assert calls == [3 * FRAMES, 2 * FRAMES]  # the three branches in one batched call; w_T = 0 skips F(T)
    torch.testing.assert_close(image_guided, multi_condition(*outputs, 0.0, 2.5), rtol=1e-5, atol=1e-5)
    image_only = multi_condition(outputs[0], outputs[1], outputs[2], 0.0, 2.5)
    assert (image_only - expected).abs().max() > 1e-3  # w_T matters


def test_the_guider_guides_only_from_guidance_from_t(pack):
    """Below guidance_from_t (a timestep; sigma 2 is t ~ 700 on this schedule) the guider's weights
    are 1: F(T) + F(I) - F(0); at and above it, the weights given."""
    import comfy.samplers

    from univg_core.diffusion.guidance import multi_condition

    guider, x, sigma = prepared_guider(pack, guidance_from_t=999)
    t = int(guider.inner_model.model_sampling.timestep(sigma[:1]))
    assert 1 < t < 999
    outputs = [comfy.samplers.calc_cond_batch(guider.inner_model, [guider.conds[branch]], x, sigma, {})[0]
               for branch in ("null", "text", "image")]
    torch.testing.assert_close(guider.predict_noise(x, sigma), multi_condition(*outputs, 1.0, 1.0), rtol=1e-5, atol=1e-5)
    guider.set_weights(6.0, 2.5, 0.0, t)  # t >= guidance_from_t: guided
    torch.testing.assert_close(guider.predict_noise(x, sigma), multi_condition(*outputs, 6.0, 2.5), rtol=1e-5, atol=1e-5)
    guider.set_weights(6.0, 0.0, 0.7, t + 1)  # text only: F(T) itself, in one model call of its branch
    with counted_model_calls(guider) as calls:
        torch.testing.assert_close(guider.predict_noise(x, sigma), outputs[1], rtol=1e-5, atol=1e-5)
    assert calls == [FRAMES]


def test_the_guider_samples_under_sampler_custom_advanced_with_rescale(pack):
    import comfy.samplers

    patcher, config = make_patcher(pack, "dynamicrafter_512")
    positive, negative = conditionings(pack, config)
    make = pack["core_sampling"].UniVGMultiConditionGuider().get_guider
    latent = torch.zeros(FRAMES, 4, SIZE, SIZE)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    sigmas = pack["core_sampling"].bgn_sigmas(patcher.get_model_object("model_sampling"), 4, 999)
    videos = {}
    for phi in (0.0, -1.0):  # -1: the model's 0.7
        (guider,) = make(patcher, positive, negative, 7.5, 2.0, phi)
        assert guider.guidance_rescale == (0.7 if phi < 0 else 0.0)
        videos[phi] = guider.sample(noise, latent, comfy.samplers.sampler_object("dpmpp_2m"), sigmas, seed=0)
        assert videos[phi].shape == latent.shape and torch.isfinite(videos[phi]).all()
    assert (videos[0.0] - videos[-1.0]).abs().max() > 1e-3


def test_the_animation_model_needs_the_first_frame_and_uses_it(pack):
    keys = pack["conditioning"]
    patcher, config = make_patcher(pack, "univg_animation")
    positive, negative = conditionings(pack, config)
    bare = [[tokens, {k: v for k, v in extras.items() if k != keys.CONCAT_LATENT}] for tokens, extras in positive]
    with pytest.raises(ValueError, match="First-Frame Conditioning"):
        core_sample(patcher, bare, negative, "euler", "simple")
    other = keys.with_extras(positive, {keys.CONCAT_LATENT: torch.zeros(1, 4, SIZE, SIZE)})
    other_negative = keys.with_extras(negative, {keys.CONCAT_LATENT: torch.zeros(1, 4, SIZE, SIZE)})
    assert (core_sample(patcher, positive, negative, "euler", "simple")
            - core_sample(patcher, other, other_negative, "euler", "simple")).abs().max() > 1e-3
    wrong_size = keys.with_extras(positive, {keys.CONCAT_LATENT: torch.zeros(1, 4, 8, 8)})
    with pytest.raises(ValueError, match="give UniVG First-Frame Conditioning the video's size"):
        core_sample(patcher, wrong_size, wrong_size, "euler", "simple")


def test_bgn_sigmas_start_at_t_n_on_the_univg_samplers_timesteps(pack):
    patcher, config = make_patcher(pack, "univg_animation")
    (sigmas,) = pack["core_sampling"].UniVGBGNSigmas().get_sigmas(patcher, 5, -1)
    sampling = patcher.get_model_object("model_sampling")
    timesteps = [int(sampling.timestep(sigma)) for sigma in sigmas[:-1]]
    assert timesteps == [990, 792, 594, 395, 197] and float(sigmas[-1]) == 0.0
    # a DynamiCrafter file names no window: it starts where the Animation Sampler starts it
    dynamicrafter, _ = make_patcher(pack, "dynamicrafter_512")
    (sigmas,) = pack["core_sampling"].UniVGBGNSigmas().get_sigmas(dynamicrafter, 5, -1)
    assert int(dynamicrafter.get_model_object("model_sampling").timestep(sigmas[0])) == 990
    with pytest.raises(ValueError, match="at most 11 steps"):
        pack["core_sampling"].UniVGBGNSigmas().get_sigmas(patcher, 12, 10)


def test_core_model_patching_nodes_apply_to_a_univg_model(host, pack):
    """Core RescaleCFG (a sampler-cfg patch on a ModelPatcher clone) and ModelSamplingDiscrete
    (a model_sampling object patch) change what core KSampler renders from a UniVG MODEL."""
    patcher, config = make_patcher(pack, "dynamicrafter_512")
    positive, negative = conditionings(pack, config)
    plain = core_sample(patcher, positive, negative, "euler", "simple", cfg=7.5)
    (rescaled,) = host.nodes.NODE_CLASS_MAPPINGS["RescaleCFG"]().patch(patcher, 0.7)
    patched = core_sample(rescaled, positive, negative, "euler", "simple", cfg=7.5)
    assert torch.isfinite(patched).all() and (patched - plain).abs().max() > 1e-3
    resampled = host.nodes.NODE_CLASS_MAPPINGS["ModelSamplingDiscrete"]().patch(patcher, "v_prediction", False)[0]
    other = core_sample(resampled, positive, negative, "euler", "simple", cfg=7.5)
    assert torch.isfinite(other).all() and (other - plain).abs().max() > 1e-3  # no zero SNR, no scale_arr


# ------------------------------------------------------------------ ComfyUI's memory management


def guided_denoiser_as_loaded(pack, patcher, config):
    """The UniVG guided denoiser (w_T 5, w_I 2) of the model as it is loaded now: no
    load_models_gpu, which on a CPU host always loads in full."""
    inner = pack["model"].univg_model(patcher)
    positive, negative = conditionings(pack, config)
    return inner, pack["guidance"].guided_denoiser(inner, positive, negative, 5.0, 2.0, 8, torch.device("cpu"))


def render_as_loaded(pack, patcher, config, steps: int = 3) -> torch.Tensor:
    """A short render of the model as it is loaded now."""
    inner, denoise = guided_denoiser_as_loaded(pack, patcher, config)
    shape = (1, 4, FRAMES, SIZE, SIZE)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    alphas_cumprod, _ = inner.schedule_tensors()
    with torch.no_grad():
        return pipelines.generate(denoise, shape, alphas_cumprod, config.prediction, steps=steps, sampler="ddim",
                                  initial_noise=noise)


def prediction_as_loaded(pack, patcher, config, t: int = 700) -> torch.Tensor:
    """One unguided UNet call on the text and image conditions (guidance would multiply the
    difference between branches, which low precision changes most)."""
    inner = pack["model"].univg_model(patcher)
    positive, _ = conditionings(pack, config)
    x = torch.randn(1, 4, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    extras = positive[0][1]
    with torch.no_grad():
        image = inner.image_proj(extras[pack["conditioning"].IMAGE_TOKENS].to(inner.compute_dtype))
        return inner.unet(x, torch.tensor([t]), context=positive[0][0], image_context=image)


def test_a_partially_loaded_univg_model_renders_what_the_fully_loaded_one_does(pack):
    """ComfyUI's partial load (a memory limit under the model's size: --lowvram, dynamic VRAM)
    leaves layers to cast and patch their weights when called; with a LoRA-style weight patch on
    the model, the partly loaded render equals the fully loaded one, and the patch shows in both."""
    import comfy.model_patcher

    patcher, config = make_patcher(pack, "videocrafter1_i2v_512", host_layers=True)
    cpu = torch.device("cpu")
    layers = weight_layers(pack["model"].univg_model(patcher))
    assert layers and all(hasattr(layer, "comfy_cast_weights") for layer in layers)
    unpatched = render_as_loaded(pack, patcher, config)
    keys = [key for key in patcher.model.state_dict() if key.endswith(("attn2.to_q.weight", "in_layers.2.weight"))]
    generator = torch.Generator().manual_seed(9)
    state = patcher.model.state_dict()
    patcher.add_patches({key: (0.2 * torch.randn(state[key].shape, generator=generator),) for key in keys[:4]})

    patcher.load(cpu, full_load=True)
    assert not getattr(patcher.model, "model_lowvram", False)
    full = render_as_loaded(pack, patcher, config)
    patcher.unpatch_model(cpu)

    patcher.load(cpu, lowvram_model_memory=patcher.model_size() // 3)
    cast_when_called = [layer for layer in layers if layer.comfy_cast_weights]
    assert patcher.model.model_lowvram and 0 < len(cast_when_called) < len(layers)
    assert any(layer.weight_function for layer in cast_when_called)  # patches applied at call time
    partial = render_as_loaded(pack, patcher, config)
    patcher.unpatch_model(cpu)
    assert isinstance(patcher, comfy.model_patcher.ModelPatcher)

    torch.testing.assert_close(partial, full, rtol=1e-4, atol=1e-5)
    assert (full - unpatched).abs().max() > 1e-2


def test_fp8_stored_weights_predict_within_tolerance_of_fp16_and_fp32(pack):
    """Weights stored in fp8 (half of fp16's memory) and cast to the compute dtype (fp32 on a
    CPU) per layer: finite, and within 50% of fp32's prediction on these random weights
    (trained weights lose far less: the Mini in tests/test_host_mini.py, and
    docs/gpu_and_memory.md); fp16 within 0.5%."""
    outputs, stored = {}, {}
    for dtype in ("fp32", "fp16", "fp8_e4m3fn", "fp8_e5m2"):
        patcher, config = make_patcher(pack, "videocrafter1_i2v_512", dtype=dtype, host_layers=True)
        inner = pack["model"].univg_model(patcher)
        stored[dtype] = (inner.dtype, inner.compute_dtype, patcher.model.manual_cast_dtype)
        outputs[dtype] = prediction_as_loaded(pack, patcher, config)
        assert torch.isfinite(outputs[dtype]).all()
    assert stored["fp8_e4m3fn"] == (torch.float8_e4m3fn, torch.float32, torch.float32)
    assert stored["fp8_e5m2"] == (torch.float8_e5m2, torch.float32, torch.float32)
    assert stored["fp16"] == (torch.float16, torch.float16, None)
    errors = {dtype: round(relative_error(outputs[dtype], outputs["fp32"]), 4) for dtype in outputs}
    print("relative L2 error of the prediction against fp32:", errors)
    assert 0 < errors["fp16"] < 0.005, errors
    assert 0 < errors["fp8_e4m3fn"] < 0.5 and 0 < errors["fp8_e5m2"] < 0.5, errors


def test_fp8_needs_layers_that_cast_and_names_what_to_do(pack):
    with pytest.raises(ValueError, match="need a model built from ComfyUI's operations"):
        make_patcher(pack, "univg_base", dtype="fp8_e4m3fn")  # torch.nn layers: they cannot compute in fp8
    with pytest.raises(ValueError, match="dtype must be one of"):
        pack["model"].choose_dtypes("fp4", torch.device("cpu"))


def test_comfyuis_memory_planning_asks_the_univg_model_for_a_whole_video(pack):
    """ModelPatcher.memory_required (what load_models_gpu and the samplers reserve) is the meta-device
    peak of a call on the batch's frames grouped into videos of the model's length."""
    patcher, config = make_patcher(pack, "dynamicrafter_512", host_layers=True)
    length = config.unet.temporal_length
    one = patcher.memory_required([length, 4, SIZE, SIZE])
    tokens = config.image_proj.total_queries
    assert one == planned_activation_bytes(config.unet, 1, length, SIZE, SIZE, image_tokens=tokens)
    assert patcher.memory_required([3 * length, 4, SIZE, SIZE]) == planned_activation_bytes(
        config.unet, 3, length, SIZE, SIZE, image_tokens=tokens)
    assert patcher.memory_required([2 * length, 4, SIZE, SIZE]) > 1.8 * one
    bf16, _ = make_patcher(pack, "dynamicrafter_512", dtype="bf16", host_layers=True)
    assert bf16.memory_required([length, 4, SIZE, SIZE]) < 0.75 * one


def test_memory_planning_falls_back_to_comfyuis_estimate_with_a_warning(pack, monkeypatch, caplog):
    patcher, config = make_patcher(pack, "univg_base")

    def broken(*args, **kwargs):
        raise RuntimeError("no dispatch mode here")

    monkeypatch.setattr(pack["native"], "planned_activation_bytes", broken)
    with caplog.at_level("WARNING", logger="univg"):
        estimate = patcher.memory_required([FRAMES, 4, SIZE, SIZE])
    assert estimate > 0 and "using ComfyUI's estimate" in caplog.text


def test_univg_samplers_run_guidance_branches_one_after_another_when_memory_is_short(pack, monkeypatch):
    """With free memory for fewer than the three branches after loading, the UniVG Base Sampler
    batches as many as fit (here one) and renders the latents of the batched call."""
    import comfy.model_management

    patcher, config = make_patcher(pack, "univg_base")
    positive, negative = conditionings(pack, config)
    inner = pack["model"].univg_model(patcher)
    one_branch = patcher.model.memory_required([FRAMES, 4, SIZE, SIZE])
    batches, real_forward = [], inner.unet.forward

    def counting(x, *args, **kwargs):
        batches.append(x.shape[0])
        return real_forward(x, *args, **kwargs)

    def render():
        batches.clear()
        return pack["samplers"].UniVGBaseSampler().sample(
            patcher, positive, negative, seed=3, steps=2, text_weight=5.0, image_weight=2.0, frames=FRAMES, fps=8,
            sampler="dpmpp_2m", width=SIZE * 8, height=SIZE * 8)[0]["samples"]

    monkeypatch.setattr(inner.unet, "forward", counting)
    batched = render()
    assert batches == [3, 3]  # this machine's free memory holds the three branches of a 4-frame video
    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *args, **kwargs: int(1.5 * one_branch))
    one_at_a_time = render()
    assert batches == [1] * 6
    torch.testing.assert_close(one_at_a_time, batched, rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_arithmetic_is_kept_with_a_warning_that_says_so(pack, monkeypatch, caplog, native):
    monkeypatch.setattr(pack["model"], "cpu_computes_bf16_natively", lambda: native)
    with caplog.at_level("WARNING"):
        chosen = pack["model"].choose_dtype("bf16", torch.device("cpu"))
    assert chosen == torch.bfloat16
    assert ("this CPU has no bf16 arithmetic" in caplog.text) is (not native), caplog.text
    assert pack["model"].choose_dtype("auto", torch.device("cpu")) == torch.float32
