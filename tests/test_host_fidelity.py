"""UniVG Multi-Conditioning on the real host: the image tokens and the null image come from
the original models' CLIP preprocessing by default, and from ComfyUI's on request."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
import torch

from univg_core.checkpoints import IMAGE_ENCODER_PREFIX, read_state_dict, split_prefix
from univg_core.models.clip_image import clip_pixels, null_image

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def encoders(host, checkpoints):
    """ComfyUI's CLIP vision from the test checkpoint's full-size ViT-H tower, built the way the
    loader builds it (and only it: the towers are GB each), and a text conditioning that the
    node passes through. ComfyUI's loaded models are let go afterwards."""
    import comfy.model_management

    loader_module = sys.modules[type(host.nodes.NODE_CLASS_MAPPINGS["UniVGCheckpointLoader"]()).__module__]
    state, _ = read_state_dict(Path(checkpoints["folder"]) / "base.safetensors")
    clip_vision = loader_module.build_clip_vision(split_prefix(state, IMAGE_ENCODER_PREFIX))
    del state
    text = torch.randn(1, 77, 1024, generator=torch.Generator().manual_seed(0))
    yield {"clip_vision": clip_vision, "positive": [[text, {}]]}
    del clip_vision
    comfy.model_management.unload_all_models()
    gc.collect()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def tower(clip_vision, images01: torch.Tensor, preprocess: str) -> torch.Tensor:
    """ComfyUI's vision tower (the layer encode_image reads) on our preprocessing of [N, 3, H, W] images."""
    with torch.no_grad():
        return clip_vision.model(pixel_values=clip_pixels(images01, preprocess), intermediate_output=-2)[0]


def test_original_and_comfyui_preprocessing_on_the_node(host, encoders):
    node = host.nodes.NODE_CLASS_MAPPINGS["UniVGConditioning"]()
    conditioning_module = sys.modules[type(node).__module__]
    clip_vision = encoders["clip_vision"]
    image = torch.rand(1, 96, 160, 3, generator=torch.Generator().manual_seed(3))
    extras = {}
    for preprocess in ("original", "comfyui"):
        conditioning, _ = node.combine(encoders["positive"], clip_vision, image, preprocess=preprocess)
        extras[preprocess] = conditioning[0][1]
        assert torch.equal(conditioning[0][0], encoders["positive"][0][0])
    keys = conditioning_module.IMAGE_TOKENS, conditioning_module.NULL_IMAGE_TOKENS
    # the default: the originals' pixels (kornia resize, no rounding) through ComfyUI's own tower
    torch.testing.assert_close(extras["original"][keys[0]], tower(clip_vision, image.movedim(-1, 1), "original"))
    torch.testing.assert_close(extras["original"][keys[1]], tower(clip_vision, null_image(), "original"))
    # 'comfyui' is ComfyUI's CLIP Vision Encode (crop off) and its 8-bit grey; our replica of its
    # preprocessing agrees with it
    theirs = clip_vision.encode_image(image, crop=False)["last_hidden_state"]
    torch.testing.assert_close(extras["comfyui"][keys[0]], theirs)
    torch.testing.assert_close(theirs, tower(clip_vision, image.movedim(-1, 1), "comfyui"), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(extras["comfyui"][keys[1]], tower(clip_vision, null_image(), "comfyui"))
    # and the two really differ (the issue measured 5-8% on the real ViT-H weights)
    assert relative(extras["comfyui"][keys[0]], extras["original"][keys[0]]) > 1e-3
    assert relative(extras["comfyui"][keys[1]], extras["original"][keys[1]]) > 1e-4


def test_image_tokens_are_kept_for_a_tower_from_the_same_unchanged_file(host, encoders, monkeypatch):
    """A second load of the same tower file (another workflow's loader, a loader run again) reuses
    the image and null-image tokens; another image, another preprocessing or a changed file is
    encoded again, and a CLIP_VISION whose file is unknown (core CLIP Vision Loader) always is."""
    import copy

    node = host.nodes.NODE_CLASS_MAPPINGS["UniVGConditioning"]()
    conditioning_module = sys.modules[type(node).__module__]
    encoded = []

    def encode(clip_vision, images, preprocess="original"):  # stands in for the GB tower: what it saw, as tokens
        encoded.append((id(clip_vision), preprocess, float(images.sum())))
        return torch.full((images.shape[0], 257, 1280), float(images.mean()) + len(preprocess))

    monkeypatch.setattr(conditioning_module, "encode_image_tokens", encode)
    monkeypatch.setattr(conditioning_module, "_TOKENS_BY_SOURCE", type(conditioning_module._TOKENS_BY_SOURCE)())
    source = conditioning_module.SOURCE
    first, again, changed, unknown = (copy.copy(encoders["clip_vision"]) for _ in range(4))
    for clip_vision, identity in ((first, ("tower.safetensors", 7, 1)), (again, ("tower.safetensors", 7, 1)),
                                  (changed, ("tower.safetensors", 7, 2))):
        setattr(clip_vision, source, identity)
    image, other = (torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2))

    def tokens(clip_vision, picture, preprocess="original"):
        extras = node.combine(encoders["positive"], clip_vision, picture, preprocess=preprocess)[0][0][1]
        return extras[conditioning_module.IMAGE_TOKENS], extras[conditioning_module.NULL_IMAGE_TOKENS]

    kept = tokens(first, image)
    assert len(encoded) == 2  # the image and the null image
    again_tokens = tokens(again, image)
    assert len(encoded) == 2 and all(torch.equal(a, b) for a, b in zip(kept, again_tokens))
    tokens(again, other)
    tokens(again, image, "comfyui")
    assert len(encoded) == 5  # the other image; the image and the null image preprocessed as ComfyUI does
    tokens(changed, image)
    assert len(encoded) == 7
    for _ in range(2):
        tokens(unknown, image)
    assert len(encoded) == 10  # the image twice, its null image once (kept per object, as before)


def test_unknown_preprocessing_is_refused(host, encoders):
    node = host.nodes.NODE_CLASS_MAPPINGS["UniVGConditioning"]()
    with pytest.raises(ValueError, match="preprocess must be one of"):
        node.combine(encoders["positive"], encoders["clip_vision"], torch.rand(1, 64, 64, 3), preprocess="pil")


def test_dpmpp_2m_equals_k_diffusions_on_the_same_sigmas(host):
    """Our DPM-Solver++ 2M (variance-preserving x_t, timesteps) against the host's k-diffusion
    sample_dpmpp_2m (x / sqrt(abar), sigmas) with the same denoiser: the same video."""
    from comfy.k_diffusion.sampling import sample_dpmpp_2m

    from univg_core.diffusion import schedule
    from univg_core.diffusion.samplers import dpmpp_2m_sample, make_timesteps

    ac = schedule.make_alphas_cumprod()
    ts = make_timesteps(12, "uniform_trailing", t_start=900)

    def x0_of(x_vp, t):
        return torch.tanh(0.8 * x_vp) * (1 + t / 2000)

    def eps_model(x_vp, t):
        return schedule.eps_from_x0(x_vp, x0_of(x_vp, t[0].item()), ac[t[0]].item())

    sigmas_of = ((1 - ac) / ac).sqrt()
    t_of_sigma = {round(sigmas_of[t].item(), 12): t.item() for t in ts}

    def k_model(x_ve, sigma):
        t = t_of_sigma[round(sigma[0].item(), 12)]
        return x0_of(x_ve * ac[t].sqrt().item(), t)

    x_T = torch.randn(1, 2, 3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = dpmpp_2m_sample(eps_model, x_T, ac, ts, "eps")
    sigmas = torch.cat([sigmas_of[ts], torch.zeros(1, dtype=torch.float64)])
    theirs = sample_dpmpp_2m(k_model, x_T / ac[ts[0]].sqrt(), sigmas, disable=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_base_sampler_ddim_final_step_choice(host):
    loader = host.nodes.NODE_CLASS_MAPPINGS["UniVGCheckpointLoader"]()
    model, clip, _, _ = loader.load("t2v.safetensors", "fp32")
    positive = [[clip.encode_from_tokens(clip.tokenize("a red circle")), {}]]
    negative = [[clip.encode_from_tokens(clip.tokenize("")), {}]]
    sampler = host.nodes.NODE_CLASS_MAPPINGS["UniVGBaseSampler"]()
    latents = {}
    for final_step in ("original", "clean"):
        (latent,) = sampler.sample(model, positive, negative, seed=3, steps=3, text_weight=7.5, image_weight=0.0,
                                   frames=2, fps=8, sampler="ddim", width=64, height=64, ddim_final_step=final_step)
        latents[final_step] = latent["samples"]
    assert latents["original"].shape == (2, 4, 8, 8)
    # the last step of 'original' stops at alphas_cumprod[0] (sqrt(1 - abar_0) ~ 0.03 of noise left)
    difference = (latents["original"] - latents["clean"]).abs().max().item()
    assert 1e-4 < difference < 1.0
    with pytest.raises(ValueError, match="final_step"):
        sampler.sample(model, positive, negative, seed=3, steps=2, text_weight=7.5, image_weight=0.0, frames=2,
                       fps=8, sampler="ddim", width=64, height=64, ddim_final_step="exact")


def test_base_sampler_guides_only_from_guidance_from_t(host):
    """guidance_from_t above every timestep of the run gives the conditional prediction at each
    step: the video w_T 1 gives; in between, a mix of both."""
    loader = host.nodes.NODE_CLASS_MAPPINGS["UniVGCheckpointLoader"]()
    model, clip, _, _ = loader.load("t2v.safetensors", "fp32")
    positive = [[clip.encode_from_tokens(clip.tokenize("a red circle")), {}]]
    negative = [[clip.encode_from_tokens(clip.tokenize("")), {}]]
    sampler = host.nodes.NODE_CLASS_MAPPINGS["UniVGBaseSampler"]()

    def video(text_weight: float, **optional) -> torch.Tensor:
        (latent,) = sampler.sample(model, positive, negative, seed=3, steps=3, text_weight=text_weight,
                                   image_weight=0.0, frames=2, fps=8, sampler="ddim", width=64, height=64, **optional)
        return latent["samples"]

    guided, conditional = video(7.5), video(1.0)
    assert (guided - conditional).abs().max() > 1e-3
    torch.testing.assert_close(video(7.5, guidance_from_t=999), conditional, rtol=0, atol=0)
    torch.testing.assert_close(video(7.5, guidance_from_t=0), guided, rtol=0, atol=0)
    mixed = video(7.5, guidance_from_t=500)  # the first of the 3 steps (t = 667) guided, the others not
    assert not torch.equal(mixed, guided) and not torch.equal(mixed, conditional)
