"""UniVG Mini's parts that ComfyUI must load as its own: the VAE (TAESD layout)."""

from __future__ import annotations

import sys

import pytest
import torch

from univg_core.mini.tiny_vae import TinyVAE
from conftest import randomize_

pytestmark = pytest.mark.host


def test_comfyui_loads_the_mini_vae_as_its_own_and_computes_the_same(host):
    import comfy.sd

    vae = randomize_(TinyVAE(), seed=4).eval()
    state = {key: value.clone() for key, value in vae.state_dict().items()}
    loader_module = sys.modules[type(host.nodes.NODE_CLASS_MAPPINGS["UniVGCheckpointLoader"]()).__module__]
    theirs = loader_module.build_vae(state)
    assert isinstance(theirs, comfy.sd.VAE) and type(theirs.first_stage_model).__name__ == "TAESD"
    assert theirs.latent_channels == 4
    pixels = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latents = theirs.encode(pixels)
        ours = vae.encode(pixels.movedim(-1, 1))
        torch.testing.assert_close(latents.float(), ours, rtol=1e-4, atol=1e-4)
        images = theirs.decode(ours)
        expected = vae.decode(ours).clamp(0, 1).movedim(1, -1)
    torch.testing.assert_close(images.reshape(expected.shape).float(), expected, rtol=1e-4, atol=1e-4)
    assert latents.shape == (2, 4, 8, 8)
