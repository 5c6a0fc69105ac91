"""Files written by `univg_core.cli.train` on the real host: fine-tuned from the test base checkpoint
(tiny UNet, full-size SD VAE and OpenCLIP towers), they load in the UniVG loader and render
through the Animation Sampler and the BGN Upscaler with the windows stored in them; and the
training encoders give what ComfyUI's encoders give the samplers at inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_host import saved_frames, tiny_api
from training_fixtures import write_dataset
from univg_core.checkpoints import load_checkpoint
from univg_core.training.clip_towers import load_text_tower, load_vision_tower, tokenize
from univg_core.training.trainer import TrainOptions, train

pytestmark = pytest.mark.host


def _train(task: str, window: tuple[int, int], host, checkpoints, root: Path) -> Path:
    write_dataset(root / "data", clips=1, frames=8)
    out = host.base / "models" / "univg" / f"trained_{task}.safetensors"
    train(TrainOptions(
        task=task, init=str(Path(checkpoints["folder"]) / "base.safetensors"), data=str(root / "data"),
        out=str(out), frames=4, height=64, width=64, max_frames=8, window_stride=4, steps=1, lr=1e-4,
        t_m=window[0], t_n=window[1], gradient_checkpointing=False, precision="fp32", cache_dir=str(root / "cache"),
    ), log=lambda message: None)
    return out


def _trained_model(task: str, window: tuple[int, int]):
    """A class-scoped fixture: the file's name in models/univg while the class runs, then removed
    (each carries the init's full-size towers, 2 GB: one at a time on CI's disk)."""
    @pytest.fixture(scope="class")
    def trained(host, checkpoints, tmp_path_factory):
        out = _train(task, window, host, checkpoints, tmp_path_factory.mktemp(f"trained_{task}"))
        yield out.name
        out.unlink(missing_ok=True)
        out.with_name(out.name + ".state.pt").unlink(missing_ok=True)

    return trained


trained_animation = _trained_model("animation", (500, 900))
trained_sr = _trained_model("sr", (0, 600))


class TestTrainedAnimationModel:
    def test_the_file_carries_its_task(self, trained_animation, host):
        animation = load_checkpoint(host.base / "models" / "univg" / trained_animation)
        assert (animation.family, animation.config.bgn_t_m, animation.config.bgn_t_n) == ("univg_animation", 500, 900)

    def test_it_renders_through_the_animation_sampler(self, trained_animation, host, checkpoints):
        api = tiny_api("animation", host, checkpoints)
        api["1"]["inputs"]["ckpt_name"] = trained_animation
        api["20"]["inputs"]["filename_prefix"] = "univg/trained_animation"
        run = host.run(api)
        assert run.success, run.error()
        assert len(saved_frames(host, run)) == 4


class TestTrainedSuperResolutionModel:
    def test_the_file_carries_its_task(self, trained_sr, host):
        sr = load_checkpoint(host.base / "models" / "univg" / trained_sr)
        assert (sr.family, sr.prediction, sr.config.bgn_t_n) == ("univg_sr", "v", 600)

    def test_it_renders_through_the_upscaler(self, trained_sr, host, checkpoints):
        api = tiny_api("base_then_super_resolution", host, checkpoints)
        api["10"]["inputs"]["ckpt_name"] = trained_sr
        api["20"]["inputs"]["filename_prefix"] = "univg/trained_sr"
        run = host.run(api)
        assert run.success, run.error()
        frames = saved_frames(host, run)
        assert len(frames) == 4 and frames[0].shape[:2] == (128, 128)


def test_training_encoders_match_comfyuis(host, checkpoints):
    """Text: our tower vs ComfyUI's CLIP (CLIPTextEncode's path); image: our vision tower vs
    ComfyUI's CLIP vision `last_hidden_state` (what UniVG Multi-Conditioning hands the model).
    ComfyUI's encoders are built as the UniVG loader builds them, one full-size tower at a time
    (scripts/test.sh runs this test in a process of its own: ComfyUI keeps about 4 GB after its
    CPU encode of the vision tower)."""
    import sys

    loader_module = sys.modules[type(host.nodes.NODE_CLASS_MAPPINGS["UniVGCheckpointLoader"]()).__module__]
    host.release()  # the renders above: their models are not needed here
    loaded = load_checkpoint(Path(checkpoints["folder"]) / "base.safetensors")
    text_state, vision_state = loaded.text_encoder_state_dict, loaded.image_encoder_state_dict
    del loaded
    prompt = "a red panda eating bamboo"
    ours = load_text_tower(text_state)(tokenize([prompt]))
    clip = loader_module.build_clip(text_state)
    del text_state
    theirs = clip.encode_from_tokens(clip.tokenize(prompt))
    del clip
    host.release()
    assert ours.shape == theirs.shape == (1, 77, 1024)
    torch.testing.assert_close(ours, theirs.float(), rtol=2e-2, atol=2e-2)
    images = torch.rand(2, 80, 96, 3, generator=torch.Generator().manual_seed(0))
    ours = load_vision_tower(vision_state)(images.movedim(-1, 1), preprocess="comfyui")  # ours first: then freed
    clip_vision = loader_module.build_clip_vision(vision_state)
    del vision_state
    theirs = clip_vision.encode_image(images, crop=False)["last_hidden_state"]
    del clip_vision
    host.release()
    assert ours.shape == theirs.shape == (2, 257, 1280)
    torch.testing.assert_close(ours, theirs.float(), rtol=2e-2, atol=2e-2)
