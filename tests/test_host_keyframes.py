"""Keyframes through the real host (issue 38): the UniVG Animation Sampler's last frame and loop,
UniVG Keyframe Conditioning under core SamplerCustomAdvanced, and UniVG Extend Video, on the
tiny animation checkpoint (DynamiCrafter 512's keys, as the interp file has)."""

from __future__ import annotations

import importlib

import pytest
import torch

from univg_core.files import file_identity

pytestmark = pytest.mark.host
FRAMES = 5


@pytest.fixture(scope="module")
def parts(host, checkpoints):
    mapping = host.nodes.NODE_CLASS_MAPPINGS
    model, clip, vae, clip_vision = mapping["UniVGCheckpointLoader"]().load(checkpoints["dynamicrafter_512_interp.ckpt"],
                                                                            "fp32")
    # the loader names the file its vision tower came from (image tokens are kept per tower file)
    assert clip_vision.univg_source == (*file_identity(host.base / "models" / "univg" / "animation.safetensors"),
                                        "embedder")
    (positive,) = mapping["CLIPTextEncode"]().encode(clip, "a red circle moving right")
    (negative,) = mapping["CLIPTextEncode"]().encode(clip, "")
    generator = torch.Generator().manual_seed(0)
    first, last = (torch.rand(1, 64, 64, 3, generator=generator) for _ in range(2))
    package = mapping["UniVGCheckpointLoader"].__module__.rsplit(".", 1)[0]
    return dict(mapping=mapping, model=model, vae=vae, positive=positive, negative=negative, first=first, last=last,
                latents=importlib.import_module(f"{package}.latents"))


def animate(parts, seed=1, **keyframe_inputs):
    sampler = parts["mapping"]["UniVGAnimationSampler"]()
    return sampler.sample(parts["model"], parts["positive"], parts["negative"], seed, 3, 5.0, 0.0, FRAMES, 0, "ddim",
                          parts["vae"], parts["first"], -1, **keyframe_inputs)[0]


def encoded(parts, image):
    return parts["latents"].encode_images(parts["vae"], image)[0]


def test_the_animation_sampler_interpolates_to_a_last_frame_and_holds_both_ends(parts):
    latent = animate(parts, last_frame=parts["last"])["samples"]
    assert latent.shape[0] == FRAMES
    torch.testing.assert_close(latent[0], encoded(parts, parts["first"]), rtol=0, atol=1e-5)
    torch.testing.assert_close(latent[-1], encoded(parts, parts["last"]), rtol=0, atol=1e-5)
    other = animate(parts, last_frame=parts["first"])["samples"]
    assert (other[2] - latent[2]).abs().max() > 1e-3  # the last frame reaches the frames between
    decoded = parts["mapping"]["UniVGVAEDecode"]().decode(animate(parts, last_frame=parts["last"]), parts["vae"], 2, True)[0]
    assert torch.equal(decoded[0], parts["first"][0]) and torch.equal(decoded[-1], parts["last"][0])


def test_loop_ends_where_it_starts_and_drops_the_repeated_frame(parts):
    latent = animate(parts, loop=True)["samples"]
    assert latent.shape[0] == FRAMES - 1
    torch.testing.assert_close(latent[0], encoded(parts, parts["first"]), rtol=0, atol=1e-5)
    plain = animate(parts)["samples"]
    assert (plain[-1] - latent[-1]).abs().max() > 1e-3


@pytest.mark.parametrize("inputs, message", [
    (dict(loop=True, last_frame="last"), "not both"),
    (dict(last_frame="small"), "give both the same size"),
])
def test_keyframe_inputs_that_cannot_work_say_what_is_expected(parts, inputs, message):
    images = {"last": parts["last"], "small": torch.rand(1, 32, 32, 3)}
    inputs = {key: images.get(value, value) if isinstance(value, str) else value for key, value in inputs.items()}
    with pytest.raises(ValueError, match=message):
        animate(parts, **inputs)


def test_keyframe_conditioning_under_sampler_custom_advanced_holds_the_keyframes_and_reads_them(parts):
    import comfy.samplers

    mapping = parts["mapping"]
    condition = mapping["UniVGKeyframeConditioning"]()
    (guider,) = mapping["UniVGMultiConditionGuider"]().get_guider(parts["model"], parts["positive"], parts["negative"],
                                                                   5.0, 0.0, 0.0)
    (sigmas,) = mapping["UniVGBGNSigmas"]().get_sigmas(parts["model"], 3, -1)
    results = []
    for last in (parts["last"], parts["first"]):
        positive, negative, latent = condition.condition(parts["positive"], parts["negative"], parts["vae"],
                                                         torch.cat([parts["first"], last]), "0, -1", FRAMES)
        guider.set_conds(positive, negative)
        noise = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(3))
        out = guider.sample(noise, latent["samples"], comfy.samplers.sampler_object("euler"), sigmas,
                            denoise_mask=latent["noise_mask"], seed=3)
        torch.testing.assert_close(out[0], encoded(parts, parts["first"]), rtol=0, atol=1e-4)
        torch.testing.assert_close(out[-1], encoded(parts, last), rtol=0, atol=1e-4)
        results.append(out)
    assert (results[0][2] - results[1][2]).abs().max() > 1e-3


@pytest.mark.parametrize("positions, message", [
    ("0", "2 keyframe image\\(s\\) but 1 position"),
    ("0, 9", "distinct frames in increasing order"),
    ("2, 1", "distinct frames in increasing order"),
    ("first, last", "comma-separated frame numbers"),
])
def test_keyframe_positions_are_checked(parts, positions, message):
    with pytest.raises(ValueError, match=message):
        parts["mapping"]["UniVGKeyframeConditioning"]().condition(
            parts["positive"], parts["negative"], parts["vae"], torch.cat([parts["first"], parts["last"]]), positions,
            FRAMES)


def extend(parts, new_frames=4, seed=4, **video):
    return parts["mapping"]["UniVGExtendVideo"]().extend(parts["model"], parts["positive"], parts["negative"], seed, 3,
                                                         5.0, 0.0, 0, "ddim", parts["vae"], new_frames, -1, 2, **video)


def test_extend_video_continues_from_the_last_frame_and_keeps_the_video_it_was_given(parts):
    video = torch.rand(3, 64, 64, 3, generator=torch.Generator().manual_seed(9))
    longer, latent = extend(parts, video=video)
    assert longer.shape == (3 + 4, 64, 64, 3) and latent["samples"].shape[0] == 3 + 4
    assert torch.equal(longer[:3], video)
    again, _ = extend(parts, video=longer)
    assert again.shape[0] == 3 + 4 + 4 and torch.equal(again[:7], longer)


def test_extend_video_chained_through_latents_has_exact_seams(parts):
    """LATENT to LATENT: each new part starts on the previous part's last latent frame exactly, the
    latents given come out unchanged, and the images are the joined latents decoded."""
    start = animate(parts)
    images, first = extend(parts, video_latent=start)
    _, second = extend(parts, new_frames=3, seed=5, video_latent=first)
    assert second["samples"].shape[0] == FRAMES + 4 + 3
    assert torch.equal(first["samples"][:FRAMES], start["samples"])
    assert torch.equal(second["samples"][:FRAMES + 4], first["samples"])
    assert torch.equal(images, parts["latents"].decode_latents(parts["vae"], first["samples"])[..., :3])
    new_part = animate_from_latent(parts, first["samples"][-1:], frames=4)
    assert torch.equal(new_part["samples"][0], first["samples"][-1]), "the seam's latent moved"
    assert torch.equal(second["samples"][FRAMES + 4:], new_part["samples"][1:])


def animate_from_latent(parts, latent, frames, seed=5):
    sampler = parts["mapping"]["UniVGAnimationSampler"]()
    image = parts["latents"].decode_latents(parts["vae"], latent)[..., :3]
    return sampler.sample(parts["model"], parts["positive"], parts["negative"], seed, 3, 5.0, 0.0, frames, 0, "ddim",
                          parts["vae"], image, -1, first_latent=latent)[0]


@pytest.mark.parametrize("video, message", [
    (None, "exactly one of video"),
    ("both", "exactly one of video"),
    ("flat", "video_latent must hold frames"),
])
def test_extend_video_asks_for_exactly_one_video(parts, video, message):
    image = torch.rand(2, 64, 64, 3)
    given = {None: {}, "both": dict(video=image, video_latent={"samples": torch.zeros(2, 4, 8, 8)}),
             "flat": dict(video_latent={"samples": torch.zeros(4, 8, 8)})}[video]
    with pytest.raises(ValueError, match=message):
        extend(parts, **given)


def test_bgn_consistent_sampling_through_the_animation_sampler_keeps_the_keyframes_and_changes_the_path(parts):
    """bgn_sampling "consistent" (issue 37) on the UniVG Animation Sampler, with a last frame too:
    the keyframes' frames are their latents exactly and the video differs from the plain sampler's."""
    for keyframe_inputs in ({}, {"last_frame": parts["last"]}):
        plain = animate(parts, **keyframe_inputs)["samples"]
        consistent = animate(parts, bgn_sampling="consistent", **keyframe_inputs)["samples"]
        assert torch.isfinite(consistent).all() and not torch.allclose(plain, consistent, atol=1e-4)
        torch.testing.assert_close(consistent[0], encoded(parts, parts["first"]), rtol=0, atol=1e-5)
        if keyframe_inputs:
            torch.testing.assert_close(consistent[-1], encoded(parts, parts["last"]), rtol=0, atol=1e-5)


def test_bgn_consistent_sampling_through_the_upscaler(host, checkpoints):
    mapping = host.nodes.NODE_CLASS_MAPPINGS
    model, clip, vae, _ = mapping["UniVGCheckpointLoader"]().load(checkpoints["univg_sr.safetensors"], "fp32")
    (positive,) = mapping["CLIPTextEncode"]().encode(clip, "a red circle")
    (negative,) = mapping["CLIPTextEncode"]().encode(clip, "")
    images = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    upscaler = mapping["UniVGUpscaler"]()
    with torch.inference_mode():  # as ComfyUI runs a node (its tiled VAE encode writes in place)
        videos = {mode: upscaler.upscale(model, vae, positive, negative, 0, 128, 128, -1.0, 3, 5.0, 0, 2, 64,
                                         images=images, bgn_sampling=mode)[0]["samples"] for mode in ("plain", "consistent")}
    assert videos["consistent"].shape == videos["plain"].shape == (2, 4, 16, 16)
    assert torch.isfinite(videos["consistent"]).all() and not torch.allclose(videos["plain"], videos["consistent"])


def upscale_every_way(host, model, clip, vae, size: int = 64) -> dict:
    """The UniVG Upscaler's latents with bgn_sampling auto, plain and consistent, on the same input and seed."""
    mapping = host.nodes.NODE_CLASS_MAPPINGS
    (positive,) = mapping["CLIPTextEncode"]().encode(clip, "a red circle")
    (negative,) = mapping["CLIPTextEncode"]().encode(clip, "")
    images = torch.rand(2, size, size, 3, generator=torch.Generator().manual_seed(3))
    upscaler = mapping["UniVGUpscaler"]()
    with torch.inference_mode():
        return {mode: upscaler.upscale(model, vae, positive, negative, 0, 2 * size, 2 * size, 0.7, 2, 3.0, 0, 2, 64,
                                       images=images, bgn_sampling=mode)[0]["samples"]
                for mode in ("auto", "plain", "consistent")}


def test_the_upscalers_auto_sampling_is_plain_for_a_model_trained_without_bgn(host, checkpoints):
    """The Upscaler's default, auto, on a VideoCrafter2 file (no BGN window in its training): plain
    (tests/test_host_mini.py: the Mini's F_SR, which names its window, gets the consistent solver)."""
    mapping = host.nodes.NODE_CLASS_MAPPINGS
    choices, options = mapping["UniVGUpscaler"].INPUT_TYPES()["optional"]["bgn_sampling"]
    assert options["default"] == "auto" and choices == ["auto", "plain", "consistent"]
    model, clip, vae, _ = mapping["UniVGCheckpointLoader"]().load(checkpoints["videocrafter2_t2v_512.ckpt"], "fp32")
    videos = upscale_every_way(host, model, clip, vae)
    assert torch.equal(videos["auto"], videos["plain"]) and not torch.allclose(videos["auto"], videos["consistent"])
