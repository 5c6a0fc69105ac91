"""The bundled workflows as the main job sets them up for UniVG Mini."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import mini_workflows
from tools.mini_workflows import apply_mini, mini_models_for

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows" / "api"


def _load(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def _nodes(workflow: dict, kind: str) -> list[dict]:
    return [node["inputs"] for node in workflow.values() if node["class_type"] == kind]


def test_base_then_super_resolution_gets_the_base_and_the_sr_model_at_the_minis_sizes(monkeypatch, tmp_path):
    for name in ("univg_mini_base.safetensors", "univg_mini_sr.safetensors"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(mini_workflows, "WEIGHTS", tmp_path)
    template = _load("base_then_super_resolution")
    workflow = apply_mini(template, "base_then_super_resolution", settings={"steps": 12})
    assert [inputs["ckpt_name"] for inputs in _nodes(workflow, "UniVGCheckpointLoader")] == [
        "univg_mini_base.safetensors", "univg_mini_sr.safetensors"]
    (base,) = _nodes(workflow, "UniVGBaseSampler")
    (upscaler,) = _nodes(workflow, "UniVGUpscaler")
    assert (base["width"], base["height"], base["frames"], base["steps"], base["fps"]) == (64, 64, 8, 12, 8)
    assert (upscaler["width"], upscaler["height"], upscaler["steps"]) == (128, 128, 7)  # its own step count
    assert upscaler["text_weight"] == mini_workflows.models.SR_TEXT_WEIGHT != _nodes(template, "UniVGUpscaler")[0]["text_weight"]
    prompts = [node["inputs"]["text"] for node in workflow.values() if node["_meta"]["title"] in ("Positive prompt", "SR prompt")]
    assert prompts == [mini_workflows.EXAMPLE_CAPTION] * 2
    assert _nodes(template, "UniVGBaseSampler")[0]["width"] == 512  # the template is left as it was


def test_keyframe_interpolation_guides_f_i_with_the_minis_weight_and_the_loop_keeps_the_nodes_default(monkeypatch, tmp_path):
    (tmp_path / "univg_mini_interpolation.safetensors").write_bytes(b"")
    monkeypatch.setattr(mini_workflows, "WEIGHTS", tmp_path)
    interpolation, loop = (apply_mini(_load(name), name) for name in ("keyframe_interpolation", "loop"))
    (sampler,) = _nodes(interpolation, "UniVGAnimationSampler")
    assert sampler["text_weight"] == mini_workflows.models.INTERPOLATION_TEXT_WEIGHT != 7.5
    assert sampler["guidance_from_t"] == mini_workflows.models.ANIMATION_GUIDANCE_FROM_T
    assert [inputs["text_weight"] for inputs in _nodes(loop, "UniVGAnimationSampler")] == [7.5]


def test_animation_gets_the_worlds_example_image_scaled_to_the_minis_size(monkeypatch, tmp_path):
    (tmp_path / "univg_mini_animation.safetensors").write_bytes(b"")
    monkeypatch.setattr(mini_workflows, "WEIGHTS", tmp_path)
    workflow = apply_mini(_load("animation"), "animation", prompt="a blue square moving up on a light background")
    assert not _nodes(workflow, "LoadImage")  # the pack's example image node: nothing to copy by hand
    assert _nodes(workflow, "UniVGExampleImage")[0]["image"] == mini_workflows.EXAMPLE_IMAGE_FILE
    assert mini_workflows.EXAMPLE_IMAGE.is_file()
    scale = _nodes(workflow, "ImageScale")[0]
    assert (scale["width"], scale["height"]) == (64, 64)
    assert _nodes(workflow, "UniVGAnimationSampler")[0]["fps"] == 8
    assert _nodes(workflow, "UniVGAnimationSampler")[0]["guidance_from_t"] == 300
    assert _nodes(_load("animation"), "UniVGAnimationSampler")[0]["guidance_from_t"] == 0  # the paper's, for real models
    guider = apply_mini(_load("animation_custom_sampler"), "animation_custom_sampler")
    assert _nodes(guider, "UniVGMultiConditionGuider")[0]["guidance_from_t"] == 300


def test_the_two_stage_workflow_draws_one_first_frame_with_the_text_to_image_model_then_animates_it():
    workflow = apply_mini(_load("text_to_video_two_stage"), "text_to_video_two_stage", settings={"frames": 12})
    assert [inputs["ckpt_name"] for inputs in _nodes(workflow, "UniVGCheckpointLoader")] == [
        "univg_mini_first_frame.safetensors", "univg_mini_animation.safetensors"]
    (image,), (animation,) = _nodes(workflow, "UniVGBaseSampler"), _nodes(workflow, "UniVGAnimationSampler")
    assert (image["frames"], image["width"], image["height"]) == (1, 64, 64)
    assert animation["frames"] == 12  # a user's frame count is the video's
    # the Mini's F_A guides from t 300 (models.ANIMATION_GUIDANCE_FROM_T); its text-to-image model at every step
    assert (animation["guidance_from_t"], image["guidance_from_t"]) == (300, 0)
    assert _nodes(workflow, "ImageFromBatch")[0]["batch_index"] == 0


def test_workflows_without_a_mini_model_say_so(monkeypatch, tmp_path):
    monkeypatch.setattr(mini_workflows, "WEIGHTS", tmp_path)
    assert mini_models_for("image_to_video") is None  # its file is not there
    assert mini_models_for("text_to_video") is None
    assert mini_models_for("a_workflow_of_another_pack") is None
    with pytest.raises(ValueError, match="image_to_video with UniVG Mini needs univg_mini_base_image.safetensors, "
                                         "missing from .*git checkout"):
        apply_mini(_load("image_to_video"), "image_to_video")
    with pytest.raises(ValueError, match="no model for the a_workflow_of_another_pack workflow"):
        apply_mini(_load("image_to_video"), "a_workflow_of_another_pack")


def test_every_bundled_workflow_has_its_shipped_mini_files():
    for name in ("text_to_video", "image_to_video", "text_image_to_video", "animation", "base_then_super_resolution",
                 "text_to_video_two_stage", "text_to_video_three_stage"):
        assert mini_models_for(name) == mini_workflows.MINI_MODELS[name]


def test_the_main_job_puts_a_users_checkpoints_in_the_loaders_in_order_and_asks_for_both_of_two():
    from tools.main_job import choose_checkpoints, set_checkpoint_and_overrides

    single = _load("text_to_video")
    assert choose_checkpoints(single, None, ["a.ckpt", "b.ckpt"]) == ["a.ckpt"]
    assert choose_checkpoints(single, ["b.ckpt"], ["a.ckpt", "b.ckpt"]) == ["b.ckpt"]
    two = _load("text_to_video_two_stage")
    with pytest.raises(ValueError, match=r"2 checkpoint loaders: .*default videocrafter2_t2v_512\.ckpt.*"
                                         r"default dynamicrafter_512\.ckpt\); give --checkpoint 2 times.*found a\.ckpt"):
        choose_checkpoints(two, None, ["a.ckpt"])
    with pytest.raises(ValueError, match="got 1 --checkpoint"):
        choose_checkpoints(two, ["a.ckpt"], ["a.ckpt", "b.ckpt"])
    set_checkpoint_and_overrides(two, choose_checkpoints(two, ["vc2.ckpt", "dc512.ckpt"], []), {"steps": 12},
                                 "a green square moving up on a light background", demo=False)
    assert [inputs["ckpt_name"] for inputs in _nodes(two, "UniVGCheckpointLoader")] == ["vc2.ckpt", "dc512.ckpt"]
    assert {inputs["steps"] for inputs in _nodes(two, "UniVGBaseSampler") + _nodes(two, "UniVGAnimationSampler")} == {12}
    texts = [node["inputs"]["text"] for node in two.values()
             if node["class_type"] == "CLIPTextEncode" and node["_meta"]["title"] in mini_workflows.PROMPT_TITLES]
    assert texts == ["a green square moving up on a light background"] * 2


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "workflows" / "api").glob("*.json")))
def test_set_seed_reaches_every_sampler_of_every_bundled_workflow(name):
    workflow = _load(name)
    count = mini_workflows.set_seed(workflow, 1234)
    seeds = [value for node in workflow.values() for key, value in node["inputs"].items()
             if key in mini_workflows.SEED_INPUTS]
    samplers = [node for node in workflow.values() if node["class_type"] in
                ("UniVGBaseSampler", "UniVGAnimationSampler", "UniVGUpscaler", "UniVGExtendVideo", "KSampler", "RandomNoise")]
    assert count == len(samplers) >= 1
    assert seeds == [1234] * count


def test_the_main_job_defaults_to_the_papers_route_with_the_mini_and_to_text_to_video_with_a_users_file():
    from tools.main_job import ROUTES, default_workflow

    assert default_workflow(users_checkpoint=False) == "text_to_video_two_stage"
    assert default_workflow(users_checkpoint=True) == "text_to_video"
    assert mini_models_for(default_workflow(False)) is not None  # the Mini ships every file of its default
    assert set(ROUTES) >= {default_workflow(False), default_workflow(True)}
