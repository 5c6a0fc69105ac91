"""Where the pack follows the original VideoCrafter / DynamiCrafter code exactly: DDIM's last
step and scale_arr, the CLIP image preprocessing, the null image, and long prompts on
models with an image branch. Each test writes the original's formula down and checks ours
against it on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_inputs, tiny_models
from univg_core.diffusion import schedule
from univg_core.models.clip_image import CLIP_MEAN, CLIP_STD, clip_pixels, null_image
from univg_core.diffusion.samplers import ddim_sample, make_timesteps
from univg_core.models.transformer import Attention


def lvdm_ddim(model_output, x, alphas_cumprod, timesteps_descending, scale_arr, eta=0.0, noises=None):
    """lvdm's DDIMSampler in its own terms: arrays over the ascending DDIM timesteps,
    ddim_alphas_prev = [abar[0]] + abar[ts[:-1]], ddim_scale_arr_prev = [s[ts[0]]] + s[ts[:-1]],
    v-prediction, pred_x0 *= scale_prev / scale_t, sampling from the last index to index 0."""
    ts = list(reversed([int(t) for t in timesteps_descending]))
    abar = alphas_cumprod.double()
    alphas = [abar[t].item() for t in ts]
    alphas_prev = [abar[0].item()] + [abar[t].item() for t in ts[:-1]]
    scales = [scale_arr[t].item() for t in ts]
    scales_prev = [scales[0]] + scales[:-1]
    sigmas = [eta * math.sqrt((1 - p) / (1 - a) * (1 - a / p)) for a, p in zip(alphas, alphas_prev)]
    for step, index in enumerate(reversed(range(len(ts)))):
        a_t, a_prev, sigma = alphas[index], alphas_prev[index], sigmas[index]
        v = model_output(x, ts[index])
        pred_x0 = math.sqrt(a_t) * x - math.sqrt(1 - a_t) * v
        e_t = math.sqrt(1 - a_t) * x + math.sqrt(a_t) * v
        pred_x0 = pred_x0 * (scales_prev[index] / scales[index])
        x = math.sqrt(a_prev) * pred_x0 + math.sqrt(1 - a_prev - sigma**2) * e_t
        if sigma > 0:
            x = x + sigma * noises[step]
    return x


def toy_v_model(x, t):
    return 0.3 * x + 0.1 * torch.sin(x) + 1e-3 * t


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_default_is_lvdms_final_step_and_scale_arr(eta):
    """DynamiCrafter-512 style: v-prediction, zero terminal SNR, scale_arr 0.7, trailing steps."""
    ac = schedule.make_alphas_cumprod(zero_terminal_snr=True)
    scale_arr = schedule.make_scale_arr(0.7)
    ts = make_timesteps(6, "uniform_trailing")
    x_T = torch.randn(1, 2, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    generator = torch.Generator().manual_seed(9)
    ours = ddim_sample(lambda x, t: toy_v_model(x, t[0].item()), x_T, ac, ts, "v", eta=eta,
                       generator=generator, scale_arr=scale_arr)
    replay = torch.Generator().manual_seed(9)
    noises = [torch.randn(x_T.shape, generator=replay, dtype=torch.float64) for _ in ts]
    expected = lvdm_ddim(toy_v_model, x_T, ac, ts, scale_arr, eta=eta, noises=noises)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)

    clean = ddim_sample(lambda x, t: toy_v_model(x, t[0].item()), x_T, ac, ts, "v", eta=eta,
                        generator=torch.Generator().manual_seed(9), scale_arr=scale_arr, final_step="clean")
    assert (clean - ours).abs().max() > 1e-2  # the clean option really is another last step


def test_ddim_last_step_numbers_by_hand():
    """Two steps from t=999 on an eps model that always says eps = 0.5, x_T = 1, no scale_arr:
    step 1 lands on abar[499]; lvdm's last step lands on abar[0], not on abar = 1."""
    ac = schedule.make_alphas_cumprod()
    ts = torch.tensor([999, 499])
    x = torch.ones(1, 1, 1, 1, 1, dtype=torch.float64)
    a999, a499, a0 = ac[999].item(), ac[499].item(), ac[0].item()
    x0 = (1 - math.sqrt(1 - a999) * 0.5) / math.sqrt(a999)
    x1 = math.sqrt(a499) * x0 + math.sqrt(1 - a499) * 0.5
    x0_last = (x1 - math.sqrt(1 - a499) * 0.5) / math.sqrt(a499)
    original = math.sqrt(a0) * x0_last + math.sqrt(1 - a0) * 0.5
    clean = x0_last
    out = ddim_sample(lambda x, t: torch.full_like(x, 0.5), x, ac, ts, "eps")
    out_clean = ddim_sample(lambda x, t: torch.full_like(x, 0.5), x, ac, ts, "eps", final_step="clean")
    assert out.item() == pytest.approx(original, abs=1e-12)
    assert out_clean.item() == pytest.approx(clean, abs=1e-12)
    assert abs(original - clean) > 1e-2
    with pytest.raises(ValueError, match="final_step"):
        ddim_sample(lambda x, t: x, x, ac, ts, "eps", final_step="exact")


# ---------------------------------------------------------------- CLIP image preprocessing

def _normalised(pixels01: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels01 - mean) / std


def test_original_preprocessing_has_no_rounding_and_no_crop():
    # an image already 224x224 passes through unchanged: no 8-bit rounding
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 224, 224, generator=g)
    torch.testing.assert_close(clip_pixels(image, "original"), _normalised(image), rtol=0, atol=1e-6)
    comfy = clip_pixels(image, "comfyui")
    torch.testing.assert_close(comfy, _normalised((image * 255).round() / 255), rtol=0, atol=1e-6)
    assert (comfy - clip_pixels(image, "original")).abs().max() > 1e-3
    # no crop: a wide image's three vertical bands all survive, squeezed to thirds
    wide = torch.zeros(1, 3, 96, 384)
    wide[:, 0, :, :128] = 1
    wide[:, 1, :, 128:256] = 1
    wide[:, 2, :, 256:] = 1
    pixels = clip_pixels(wide, "original") * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    for band, column in enumerate((30, 112, 193)):
        assert pixels[0, :, 112, column].argmax().item() == band
        assert pixels[0, band, 112, column].item() == pytest.approx(1.0, abs=2e-2)


def test_original_preprocessing_is_the_kornia_formula():
    """DynamiCrafter's FrozenOpenCLIPImageEmbedderV2.preprocess on x in [-1, 1]: kornia resize to
    224x224 (bicubic, align_corners=True, antialias=True), then (x + 1) / 2, then CLIP mean/std."""
    from kornia.geometry.transform import resize

    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 320, 512, generator=g)
    signed = image * 2 - 1
    expected = _normalised((resize(signed, (224, 224), interpolation="bicubic", align_corners=True,
                                   antialias=True) + 1) / 2)
    torch.testing.assert_close(clip_pixels(image, "original"), expected, rtol=0, atol=1e-6)
    # and it is not what ComfyUI's clip_preprocess makes of the same image
    difference = (clip_pixels(image, "comfyui") - expected).abs().mean()
    assert difference > 1e-3
    with pytest.raises(ValueError, match="original"):
        clip_pixels(image, "pil")


def test_null_image_is_exactly_mid_grey():
    """The originals' unconditional image is their embedder applied to zeros in [-1, 1]: 0.5 grey
    after the mapping, resized without change; ComfyUI's path rounds it to 128/255."""
    grey = null_image()
    assert grey.shape == (1, 3, 224, 224) and torch.all(grey == 0.5)
    original = clip_pixels(grey, "original")
    expected = _normalised(torch.full((1, 3, 224, 224), 0.5))
    assert torch.equal(original, expected)
    comfy = clip_pixels(grey, "comfyui")
    torch.testing.assert_close(comfy, _normalised(torch.full((1, 3, 224, 224), 128 / 255)), rtol=0, atol=1e-7)
    # a grey of another size (the originals pass zeros at the video's size) gives the same pixels
    torch.testing.assert_close(clip_pixels(torch.full((1, 3, 320, 512), 0.5), "original"), expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- long prompts

def _token_counts(unet, projection: str) -> list:
    """Token counts that reach `projection` (to_k or to_k_ip) of every Multi-condition Cross Attention."""
    seen = []
    for module in unet.modules():
        if isinstance(module, Attention) and module.has_image_branch:
            getattr(module, projection).register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape[1]))
    return seen


def test_long_prompt_never_reaches_the_image_branch():
    """A 154-token ComfyUI prompt on a model with an image branch: every text token goes to
    to_k/to_v; the image branch sees image tokens only, or nothing when no image is given."""
    config, unet, image_proj = tiny_models("dynamicrafter_512")
    x, t, text, clip_tokens = tiny_inputs(config)
    long_text = torch.cat([text, torch.randn(2, 77, text.shape[-1], generator=torch.Generator().manual_seed(5))], 1)
    image_lengths, text_lengths = _token_counts(unet, "to_k_ip"), _token_counts(unet, "to_k")
    with torch.no_grad():
        without_image = unet(x, t, context=long_text, fs=8)
        assert image_lengths == [] and set(text_lengths) == {154}
        image = image_proj(clip_tokens)
        text_lengths.clear()
        unet(x, t, context=long_text, image_context=image, fs=8)
    per_frame = config.unet.image_tokens_per_frame
    assert set(text_lengths) == {154} and image_lengths and set(image_lengths) <= {image.shape[1], per_frame}
    # the first 77 tokens alone give another output: the last 77 are attended as text
    with torch.no_grad():
        assert (without_image - unet(x, t, context=text, fs=8)).abs().max() > 1e-4


def test_original_combined_context_splits_at_77_only_on_request():
    config, unet, image_proj = tiny_models("videocrafter1_i2v_512")
    _, _, text, clip_tokens = tiny_inputs(config)
    image = image_proj(clip_tokens)
    text_part, image_part = unet.split_original_context(torch.cat([text, image], dim=1))
    assert torch.equal(text_part, text) and torch.equal(image_part, image)
    text_only, nothing = unet.split_original_context(text)
    assert torch.equal(text_only, text) and nothing is None
    with pytest.raises(ValueError, match="77"):
        unet.split_original_context(text[:, :20])
