"""The text and frame-order probes on known answers, and on tiny real UNet3Ds: without temporal
convolutions (temporal attention has no position terms) the network cannot tell frame order."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import randomize_, tiny_config
from univg_core.diffusion.schedule import make_alphas_cumprod, x0_from_v
from univg_core.evaluation import probes
from univg_core.mini.world import make_spec
from univg_core.models.unet3d import UNet3D

ABAR = make_alphas_cumprod()


def _latents(frames: int = 4, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 4, frames, 8, 8, generator=torch.Generator().manual_seed(3))


def test_orders():
    assert probes.reversed_order(4).tolist() == [3, 2, 1, 0]
    assert probes.adjacent_pairs_swapped(8).tolist() == [0, 2, 1, 4, 3, 6, 5, 7]
    assert probes.adjacent_pairs_swapped(5).tolist() == [0, 2, 1, 4, 3]


def test_frame_order_sensitivity_on_known_answers():
    latents, context = _latents(), torch.zeros(2, 77, 8)

    def frame_index(x, t, c):  # each frame's output is its index, whatever it shows
        return torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1).expand_as(x)

    def framewise(x, t, c):
        return 2 * x + 1

    orders = {"reversed": probes.reversed_order(4), "as given": torch.arange(4)}
    by_index = probes.frame_order_sensitivity(frame_index, latents, context, 500, ABAR, orders)
    # indices 0 1 2 3 against 3 2 1 0: differences 3 1 -1 -3, so sqrt(20 / 14) of the output
    assert by_index["reversed"] == pytest.approx(math.sqrt(20 / 14), rel=1e-6)
    assert by_index["as given"] == 0
    assert probes.frame_order_sensitivity(framewise, latents, context, 500, ABAR, orders)["reversed"] == pytest.approx(
        0, abs=1e-6)


def test_v_losses_charge_a_model_for_the_context_it_gets_wrong():
    """An oracle that knows the clean latents predicts v exactly for the right context and
    zero for the wrong one: loss 0 against the mean square of v."""
    latents, timestep = _latents(), 700
    right, wrong = torch.zeros(2, 77, 8), torch.ones(2, 77, 8)
    abar = ABAR[timestep]

    def oracle(x_t, t, context):
        noise = (x_t - abar.sqrt() * latents) / (1 - abar).sqrt()
        v = abar.sqrt() * noise - (1 - abar).sqrt() * latents
        return v if bool((context == 0).all()) else torch.zeros_like(x_t)

    losses = probes.v_losses(oracle, latents, {"right": right, "wrong": wrong}, timestep, ABAR, seed=5)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    v = abar.sqrt() * noise - (1 - abar).sqrt() * latents
    assert losses["right"] == pytest.approx(0, abs=1e-10)
    assert losses["wrong"] == pytest.approx(float((v**2).mean()), rel=1e-5)
    x_t = abar.sqrt() * latents + (1 - abar).sqrt() * noise
    assert torch.allclose(x0_from_v(x_t, v, abar), latents, atol=1e-5)  # the same parameterisation as the models


@pytest.mark.parametrize("temporal_conv", [False, True])
def test_a_unet3d_tells_frame_order_only_through_its_temporal_convolutions(temporal_conv):
    config = tiny_config("univg_base")
    unet_config = dataclasses.replace(config.unet, temporal_conv=temporal_conv, use_relative_position=False)
    unet = randomize_(UNet3D(unet_config), seed=1).eval()
    latents = _latents()
    context = torch.randn(2, 77, unet_config.context_dim, generator=torch.Generator().manual_seed(4))

    def model(x, t, c):
        return unet(x, t, context=c, fs=8)

    change = probes.frame_order_sensitivity(model, latents, context, 600, ABAR,
                                            {"reversed": probes.reversed_order(4)})["reversed"]
    if temporal_conv:
        assert change > 1e-2
    else:
        assert change < 1e-5


def test_caption_edits():
    spec = make_spec("circle", "red", "dark", "right", 8, np.random.default_rng(0))
    assert probes.opposite_motion_caption(spec) == "a red circle moving left on a dark background"
    assert probes.other_colour_caption(spec) == "a blue circle moving right on a dark background"
    growing = make_spec("square", "purple", "gray", "growing", 8, np.random.default_rng(0))
    assert probes.opposite_motion_caption(growing) == "a purple square moving left on a gray background"
    assert probes.other_colour_caption(growing) == "a green square growing on a gray background"


def test_probe_command_names_a_missing_or_wrong_model(tmp_path, capsys):
    from univg_core.cli import probe_text
    from univg_core.cli.install_mini import WEIGHTS

    missing = tmp_path / "nowhere.safetensors"
    assert probe_text.main(["--model", str(missing)]) == 2
    assert "nowhere.safetensors" in capsys.readouterr().err
    assert probe_text.main(["--model", str(WEIGHTS / "univg_mini_animation.safetensors")]) == 2
    assert "not a text-to-video F_B (8 input channels)" in capsys.readouterr().err
