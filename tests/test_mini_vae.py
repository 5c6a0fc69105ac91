"""UniVG Mini's VAE module and its trainer."""

from __future__ import annotations

import math

import pytest
import torch

from univg_core.models.tiny_vae import TinyVAE
from univg_core.mini.train_vae import VAETrainOptions, psnr, reconstruction_loss, render_pool, train_vae


def test_tiny_vae_shapes_and_layout():
    vae = TinyVAE()
    latents = vae.encode(torch.rand(2, 3, 64, 64))
    assert latents.shape == (2, 4, 8, 8)
    assert vae.decode(latents).shape == (2, 3, 64, 64)
    keys = set(vae.state_dict())
    assert "taesd_encoder.0.weight" in keys and "taesd_decoder.1.weight" in keys
    assert "taesd_encoder.1.conv.4.weight" in keys and "taesd_decoder.19.weight" in keys
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.rand(1, 3, 60, 64))


def test_psnr_known_values():
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert psnr(image, image) == math.inf
    assert psnr(torch.full((1, 3, 4, 4), 0.6), torch.full((1, 3, 4, 4), 0.5)) == pytest.approx(20.0)


def test_vae_training_lowers_the_reconstruction_error():
    options = VAETrainOptions(steps=60, batch_size=4, crop=16, lr=2e-3, pool_clips=4, log_every=100)
    pool = render_pool(4, options.seed, 64)[:8]
    torch.manual_seed(options.seed)  # the initial weights train_vae starts from
    before = psnr(TinyVAE()(pool).detach(), pool)
    after = psnr(train_vae(options, log=None)(pool).detach(), pool)
    assert after > before + 8, (before, after)  # seen: 6.2 -> 20.6 dB


def test_the_object_weight_makes_an_objects_error_cost_more_than_its_share_of_pixels():
    """A gray crop with a blue 4x4 object (16 of 256 pixels): missing the object costs the
    plain loss its 1/16 share; with object weight 4 its pixels weigh 5, a share of 80/320.
    Background errors cost less the same way."""
    gray, blue = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.24, 0.39, 0.92])
    target = gray[None, :, None, None].repeat(1, 1, 16, 16)
    target[..., 6:10, 6:10] = blue[None, :, None, None]
    object_lost = target.clone()
    object_lost[..., 6:10, 6:10] = gray[None, :, None, None]
    error = (blue - gray).abs() + (blue - gray) ** 2
    per_object_pixel = float(error.mean())
    assert float(reconstruction_loss(object_lost, target)) == pytest.approx(per_object_pixel * 16 / 256)
    assert float(reconstruction_loss(object_lost, target, object_weight=4)) == pytest.approx(per_object_pixel * 80 / 320)
    background_off = target + 0.1
    background_off[..., 6:10, 6:10] = target[..., 6:10, 6:10]
    plain, weighted = (float(reconstruction_loss(background_off, target, w)) for w in (0, 4))
    assert weighted == pytest.approx(plain * (240 / 320) / (240 / 256))


def test_the_shuffle_vae_starts_as_the_vae_it_grows_from_and_can_draw_what_nearest_upsampling_cannot():
    """ShuffleTinyVAE.starting_from decodes exactly as the TAESD-layout VAE; and only a decoder whose
    last doubling is a pixel shuffle can turn a flat latent into a pattern that alternates pixel by
    pixel (a constant latent through nearest upsampling and convolutions stays constant inside)."""
    from conftest import randomize_
    from univg_core.models.tiny_vae import ShuffleTinyVAE

    mini = randomize_(TinyVAE(), seed=2).eval()
    grown = ShuffleTinyVAE.starting_from(mini).eval()
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(grown.decode(latents), mini.decode(latents), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grown.encode(torch.rand(1, 3, 64, 64)).shape, torch.Size([1, 4, 8, 8]))
    assert {key for key in grown.state_dict() if key.startswith("shuffle_decoder.")} and not any(
        key.startswith("taesd_decoder.") for key in grown.state_dict())
    flat = torch.full((1, 4, 48, 48), 0.7)  # its centre lies beyond what the zero padding at the borders reaches
    with torch.no_grad():
        randomized = randomize_(ShuffleTinyVAE(), seed=4).decode(flat)[..., 176:208, 176:208]
        nearest = randomize_(TinyVAE(), seed=4).decode(flat)[..., 176:208, 176:208]
    assert (randomized[..., 0::2, :] - randomized[..., 1::2, :]).abs().max() > 1e-3
    assert (nearest - nearest[..., :1, :1]).abs().max() < 1e-5


def test_the_detail_weight_makes_what_a_2x_area_downsample_removes_cost_more():
    """An error that is a period-2 pattern (all of it block detail) costs 1 + w times the plain
    loss; an error that is flat over each 2x2 block (no block detail) costs the same as without."""
    target = torch.full((1, 3, 8, 8), 0.5)
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2 - 1.0) * 0.1
    patterned = target + checker
    flat = target + 0.1
    for weight in (1.0, 4.0):
        plain = reconstruction_loss(patterned, target)
        torch.testing.assert_close(reconstruction_loss(patterned, target, detail_weight=weight), (1 + weight) * plain)
        torch.testing.assert_close(reconstruction_loss(flat, target, detail_weight=weight), reconstruction_loss(flat, target))
