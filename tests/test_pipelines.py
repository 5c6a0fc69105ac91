"""The three UniVG paths end to end with tiny real UNets, seeded."""

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_models
from univg_core.diffusion import pipelines
from univg_core.video import upsample_frames
from univg_core.diffusion.guidance import Condition, make_guided_denoiser, unet_model_fn
from univg_core.diffusion.schedule import alphas_cumprod_for


def conditions(config, image_proj, seed=0):
    g = torch.Generator().manual_seed(seed)
    dim = config.unet.context_dim
    null_text, text = torch.zeros(1, 77, dim), torch.randn(1, 77, dim, generator=g)
    clip = torch.randn(2, 9, config.image_proj.embedding_dim, generator=g)
    with torch.no_grad():
        grey, image = image_proj(clip).chunk(2)
    return {
        "null": Condition(null_text, grey),
        "text": Condition(text, grey),
        "image": Condition(null_text, image),
    }


def base_run(unet, config, conds, w_text, w_image, seed=1):
    denoise = make_guided_denoiser(unet_model_fn(unet, fs=8), "multi", conds, w_text, w_image)
    with torch.no_grad():
        return pipelines.generate(
            denoise, (1, 4, 4, 8, 8), alphas_cumprod_for(config.schedule), config.prediction, steps=4,
            generator=torch.Generator().manual_seed(seed),
        )


def test_base_text_image_to_video_reproducible_and_image_weight_zero_ignores_image():
    config, unet, image_proj = tiny_models("univg_base")
    conds = conditions(config, image_proj)
    first = base_run(unet, config, conds, 7.5, 1.0)
    assert first.shape == (1, 4, 4, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(first, base_run(unet, config, conds, 7.5, 1.0))  # bit-reproducible on CPU
    other_image = dict(conds, image=Condition(conds["null"].text, conds["image"].image.flip(1) * 3))
    assert (base_run(unet, config, other_image, 7.5, 1.0) - first).abs().max() > 1e-4
    torch.testing.assert_close(base_run(unet, config, other_image, 7.5, 0.0), base_run(unet, config, conds, 7.5, 0.0))


def test_animation_keeps_first_frame_and_every_branch_sees_the_concat():
    config, unet, image_proj = tiny_models("univg_animation")
    conds = conditions(config, image_proj)
    channels_seen = []

    def model(x, t, text, image):
        channels_seen.append(x.shape[1])
        return unet(x, t, context=text, image_context=image, fs=8)

    denoise = make_guided_denoiser(model, "multi", conds, 7.5, 1.0)
    first = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        video = pipelines.animate(
            denoise, first, 4, alphas_cumprod_for(config.schedule), config.prediction, steps=3,
            generator=torch.Generator().manual_seed(4),
        )
    assert video.shape == (1, 4, 4, 8, 8) and torch.isfinite(video).all()
    torch.testing.assert_close(video[:, :, 0], first, rtol=0, atol=1e-6)
    assert (video[:, :, 1:] - first[:, :, None]).abs().mean() > 1e-3  # the other frames are generated
    assert channels_seen == [8] * 3  # one batched call per step, all three branches with the concat


@pytest.mark.parametrize("branches_per_call, batches", [(None, [3]), (2, [2, 1]), (1, [1, 1, 1])])
def test_guidance_branches_in_fewer_per_call_give_the_batched_output(branches_per_call, batches):
    """Run one after another when memory is short, the three branches of multi-condition guidance
    give the batched call's guided output (float tolerance: a batch of 1 and of 3 may take
    different kernels), in calls of the asked sizes."""
    config, unet, image_proj = tiny_models("univg_base")
    conds = conditions(config, image_proj)
    seen = []

    def model(x, t, text, image):
        seen.append(x.shape[0])
        return unet(x, t, context=text, image_context=image, fs=8)

    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([500])
    with torch.no_grad():
        reference = make_guided_denoiser(model, "multi", conds, 7.5, 2.0)(x, t)
        seen.clear()
        split = make_guided_denoiser(model, "multi", conds, 7.5, 2.0, branches_per_call=branches_per_call)(x, t)
    assert seen == batches
    torch.testing.assert_close(split, reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="branches_per_call must be at least 1"):
        make_guided_denoiser(model, "multi", conds, 7.5, 2.0, branches_per_call=0)


def local_denoiser(x, t):
    # depends on each latent position alone, so tiling cannot change it
    return torch.tanh(x) * (1 + t.view(-1, 1, 1, 1, 1) / 1000)


def test_tiled_equals_whole_for_a_local_denoiser():
    x = torch.randn(1, 4, 10, 12, 20, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    tiled = pipelines.tiled(local_denoiser, tile_frames=4, tile_height=8, tile_width=8, overlap_frames=2, overlap_space=3)
    torch.testing.assert_close(tiled(x, t), local_denoiser(x, t), atol=1e-6, rtol=1e-6)


def test_tiled_with_whole_size_tiles_is_the_model_itself():
    config, unet, _ = tiny_models("univg_sr")
    model = unet_model_fn(unet, fs=8)
    text = torch.randn(1, 77, 32)
    denoise = make_guided_denoiser(model, "none", {"cond": Condition(text)})
    x, t = torch.randn(1, 4, 4, 8, 8), torch.tensor([300])
    with torch.no_grad():
        torch.testing.assert_close(pipelines.tiled(denoise, 8, 16, 16)(x, t), denoise(x, t), rtol=0, atol=0)
        seams = pipelines.tiled(denoise, 2, 4, 4, 1, 2)(x, t)  # a real UNet differs across seams, but stays bounded
    assert torch.isfinite(seams).all() and seams.abs().max() < 10 * denoise(x, t).abs().max()


def pooled_encoder(pixels):
    """A VAE-shaped stand-in: 8x downsample to 4 channels."""
    return F.avg_pool2d(pixels, 8).repeat(1, 2, 1, 1)[:, :4]


def nearest_decoder(latents):
    return F.interpolate(latents[:, :3], scale_factor=8, mode="nearest").clamp(-1, 1)


def test_super_resolution_end_to_end_and_chunked_equals_whole():
    config, unet, _ = tiny_models("univg_sr")
    text = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(0))
    denoise = make_guided_denoiser(
        unet_model_fn(unet, fs=8), "cfg", {"cond": Condition(text), "uncond": Condition(torch.zeros(1, 77, 32))}, 3.0
    )
    low = torch.rand(6, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ac = alphas_cumprod_for(config.schedule)
    common = dict(height=32, width=48, steps=3, vae_chunk=2)
    with torch.no_grad():
        whole = pipelines.super_resolve(denoise, pooled_encoder, nearest_decoder, low, ac, config.prediction,
                                        tile=None, generator=torch.Generator().manual_seed(2), **common)
        assert whole.shape == (6, 3, 32, 48) and torch.isfinite(whole).all()
        # chunking the VAE and tiling along time only where tiles cover the model's whole window
        chunked = pipelines.super_resolve(denoise, pooled_encoder, nearest_decoder, low, ac, config.prediction,
                                          tile=(6, 4, 6), overlap=(0, 0), generator=torch.Generator().manual_seed(2),
                                          **dict(common, vae_chunk=1))
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)


def test_super_resolution_starts_from_the_condition():
    config, _, _ = tiny_models("univg_sr")
    ac = alphas_cumprod_for(config.schedule)
    condition = torch.randn(1, 4, 2, 8, 8)
    starts = []

    def denoise(x, t):
        starts.append((int(t[0]), x.clone()))
        return torch.zeros_like(x)

    pipelines.super_resolve_latents(denoise, condition, ac, "v", strength=0.7, steps=7, tile=None,
                                    generator=torch.Generator().manual_seed(0))
    assert [t for t, _ in starts] == [700, 600, 500, 400, 299, 199, 99]
    noise = torch.randn(condition.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(starts[0][1], ac[700].sqrt().item() * condition + (1 - ac[700]).sqrt().item() * noise)


def test_pipeline_bad_inputs():
    ac = alphas_cumprod_for(tiny_models("univg_sr")[0].schedule)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="steps must be an integer in"):
        pipelines.generate(zero, (1, 4, 2, 8, 8), ac, "eps", steps=0)
    with pytest.raises(ValueError, match="latent shape"):
        pipelines.generate(zero, (1, 4, 8, 8), ac, "eps")
    with pytest.raises(ValueError, match="t_m < t_n"):
        pipelines.animate(zero, torch.zeros(1, 4, 8, 8), 4, ac, "eps", t_m=900, t_n=600)
    with pytest.raises(ValueError, match="strength"):
        pipelines.super_resolve_latents(zero, torch.zeros(1, 4, 2, 8, 8), ac, "v", strength=1.5)
    with pytest.raises(ValueError, match="multiples of 8"):
        pipelines.super_resolve(zero, pooled_encoder, nearest_decoder, torch.zeros(2, 3, 16, 16), ac, "v",
                                height=60, width=64)
    with pytest.raises(ValueError, match=r"\[T, 3, H, W\]"):
        pipelines.super_resolve(zero, pooled_encoder, nearest_decoder, torch.zeros(2, 4, 16, 16), ac, "v")
    # low-resolution frames of any size are upsampled to the (multiple of 8) target
    odd = pipelines.super_resolve(zero, pooled_encoder, None, torch.zeros(2, 3, 12, 13), ac, "v", height=32, width=32,
                                  steps=2, tile=None)
    assert odd.shape == (1, 4, 2, 4, 4)
    with pytest.raises(ValueError, match="multiples of 8"):
        upsample_frames(torch.zeros(2, 3, 16, 16), 100, 64)
    with pytest.raises(ValueError, match="sampler must be one of"):
        pipelines.generate(zero, (1, 4, 2, 8, 8), ac, "eps", sampler="euler")
