"""The node pack on the real ComfyUI 0.3.75 host, in-process: registration, every bundled
workflow end to end, a core node in the middle, reproducibility, and bad input.

Checkpoints are written by the tests in the real lvdm layout (tiny UNet3D, full-size SD
VAE / OpenCLIP towers with random weights) and cached in .cache/test_models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools.mini_workflows import video_length
from tools.workflow_format import api_to_ui, object_info_from_classes, ui_to_api, without_meta

pytestmark = pytest.mark.host
ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"  # api/: the API twins the main job and the tests read
EXAMPLES = ROOT / "example_workflows"  # the drag-in UI files (ComfyUI's Templates menu)
TINY = {"steps": 3, "frames": 4, "width": 64, "height": 64}


def tiny_api(name: str, host, checkpoints: dict) -> dict:
    """A bundled UI workflow converted to the API format, with the test checkpoints and tiny sizes."""
    ui = json.loads((EXAMPLES / f"{name}.json").read_text())
    api = ui_to_api(ui, object_info_from_classes(host.nodes.NODE_CLASS_MAPPINGS))
    for node in api.values():
        inputs = node["inputs"]
        if node["class_type"] == "UniVGCheckpointLoader":
            inputs["ckpt_name"] = checkpoints[inputs["ckpt_name"]]
        if node["class_type"].startswith("UniVG") and node["class_type"] != "UniVGUpscaler":
            inputs.update({k: v for k, v in TINY.items() if k in inputs})
        if node["class_type"] == "UniVGUpscaler":
            inputs.update(width=128, height=128, steps=2, tile_frames=2, tile_size=64)
        if node["class_type"] == "UniVGExtendVideo":
            inputs["new_frames"] = TINY["frames"] - 1
        if node["class_type"] == "ImageScale":
            inputs.update(width=64, height=64)
        if node["class_type"] in ("KSampler", "UniVGBGNSigmas"):
            inputs["steps"] = TINY["steps"]
        if node["class_type"] == "EmptyLatentImage":
            inputs.update(width=TINY["width"], height=TINY["height"], batch_size=TINY["frames"])
    return api


def read_mp4(path: Path) -> tuple[np.ndarray, float, str]:
    """An MP4's frames [T, H, W, 3] (uint8), frame rate and codec, through PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, float(stream.average_rate), stream.codec_context.name


def saved_video(host, run) -> tuple[list[np.ndarray], float, str]:
    """The frames, frame rate and codec of the video the run saved (an MP4 through PyAV, or
    an animated image through Pillow)."""
    (node_output,) = [o for o in run.outputs.values() if o.get("images")]
    item = node_output["images"][0]
    path = host.output_dir / item["subfolder"] / item["filename"]
    assert path.is_file() and path.stat().st_size > 0
    if path.suffix == ".mp4":
        frames, fps, codec = read_mp4(path)
        return list(frames), fps, codec
    frames, duration_ms = [], 0
    with Image.open(path) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB")))
            duration_ms += image.info.get("duration", 0)
    return frames, 1000 * len(frames) / max(duration_ms, 1), path.suffix[1:]


def saved_frames(host, run) -> list[np.ndarray]:
    return saved_video(host, run)[0]


def output_listing(host) -> set:
    return {p for p in host.output_dir.rglob("*") if p.is_file()}


def test_every_node_registers(host):
    mapping = host.nodes.NODE_CLASS_MAPPINGS
    names = host.nodes.NODE_DISPLAY_NAME_MAPPINGS
    ours = {k for k in mapping if k.startswith("UniVG")}
    assert ours == {"UniVGCheckpointLoader", "UniVGConditioning", "UniVGBaseSampler", "UniVGAnimationSampler",
                    "UniVGUpscaler", "UniVGVAEDecode", "UniVGVAEEncode", "UniVGMultiConditionGuider",
                    "UniVGFirstFrameConditioning", "UniVGKeyframeConditioning", "UniVGBGNSigmas", "UniVGExampleImage",
                    "UniVGExtendVideo"}
    for key in ours:
        assert mapping[key].CATEGORY == "UniVG" and names[key].startswith("UniVG")
    loader_files = mapping["UniVGCheckpointLoader"].INPUT_TYPES()["required"]["ckpt_name"][0]
    assert "t2v.safetensors" in loader_files  # models/univg is registered and listed


def test_every_node_explains_itself(host):
    """A DESCRIPTION and SEARCH_ALIASES on every node and a tooltip on every input (V1 API:
    ComfyUI shows them in the node library, on hover and in search)."""
    missing = []
    for key, node in host.nodes.NODE_CLASS_MAPPINGS.items():
        if not key.startswith("UniVG"):
            continue
        if len(getattr(node, "DESCRIPTION", "")) < 20:
            missing.append(f"{key}: DESCRIPTION")
        aliases = getattr(node, "SEARCH_ALIASES", [])
        if not aliases or not all(isinstance(alias, str) and alias for alias in aliases):
            missing.append(f"{key}: SEARCH_ALIASES")
        for section, inputs in node.INPUT_TYPES().items():
            for name, spec in inputs.items():
                options = spec[1] if len(spec) > 1 else {}
                if len(options.get("tooltip", "")) < 10:
                    missing.append(f"{key}.{section}.{name}: tooltip")
        if len(getattr(node, "OUTPUT_TOOLTIPS", ())) != len(node.RETURN_TYPES):
            missing.append(f"{key}: OUTPUT_TOOLTIPS")
    assert not missing, "\n".join(missing)


def test_demo_vae_layout_is_comfyuis(host):
    from comfy.ldm.models.autoencoder import AutoencoderKL

    from tools.demo_checkpoint import vae_shapes

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    with torch.device("meta"):
        reference = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    assert vae_shapes() == {"first_stage_model." + k: tuple(v.shape) for k, v in reference.state_dict().items()}


BUNDLED = ["text_to_video", "image_to_video", "text_image_to_video", "animation", "base_then_super_resolution",
           "text_to_video_ksampler", "animation_custom_sampler", "text_to_video_two_stage", "text_to_video_three_stage",
           "keyframe_interpolation", "loop", "long_video"]


def test_every_bundled_workflow_is_tested():
    assert sorted(path.stem for path in (WORKFLOWS / "api").glob("*.json")) == sorted(BUNDLED)


def test_example_workflows_hold_every_bundled_workflow_and_its_mini_variant_with_thumbnails():
    stems = sorted(path.stem for path in EXAMPLES.glob("*.json"))
    assert stems == sorted(BUNDLED + [f"univg_mini_{name}" for name in BUNDLED])
    for stem in stems:
        with Image.open(EXAMPLES / f"{stem}.jpg") as thumbnail:  # ComfyUI's Templates menu shows it
            assert thumbnail.size[0] >= 256 and thumbnail.size[1] >= 256


@pytest.mark.parametrize("name", BUNDLED)
def test_ui_workflows_match_their_api_twins(host, name):
    """example_workflows/NAME.json is the API twin in the UI format; univg_mini_NAME.json is the
    twin set up for UniVG Mini, and it validates on the host with nothing installed (the Mini's
    files are listed from the pack, its example image comes from the pack's node)."""
    from tools.mini_workflows import apply_mini

    info = object_info_from_classes(host.nodes.NODE_CLASS_MAPPINGS)
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    for ui_name, twin in ((name, api), (f"univg_mini_{name}", apply_mini(api, name))):
        ui = json.loads((EXAMPLES / f"{ui_name}.json").read_text())
        assert ui == api_to_ui(twin, info), "regenerate the UI files: python -m tools.make_ui_workflows"
        assert without_meta(ui_to_api(ui, info)) == without_meta(twin)
        assert ui["version"] == 0.4 and ui["links"] and all("widgets_values" in n for n in ui["nodes"])
    mini = ui_to_api(json.loads((EXAMPLES / f"univg_mini_{name}.json").read_text()), info)
    ok, error, _, node_errors = host.loop.run_until_complete(host.execution.validate_prompt("validate", mini, None))
    assert ok, (error, node_errors)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_workflow_renders_an_mp4(host, checkpoints, name):
    api = tiny_api(name, host, checkpoints)
    run = host.run(api)
    assert run.success, run.error()
    frames, fps, codec = saved_video(host, run)
    assert (len(frames), fps, codec) == (video_length(api), 8.0, "h264")
    expected = (128, 128) if name in ("base_then_super_resolution", "text_to_video_three_stage") else (64, 64)
    assert frames[0].shape[:2] == expected
    if name == "animation":
        # a core Image Scale sits between the image and the sampler; frame 0 is its output (through H.264)
        import comfy.utils

        source = np.asarray(Image.open(host.base / "input" / "univg_example.png").convert("RGB"))
        pixels = torch.from_numpy(source.astype(np.float32) / 255).movedim(-1, 0)[None]
        scaled = comfy.utils.common_upscale(pixels, 64, 64, "bicubic", "disabled")[0].movedim(0, -1)
        expected_first = np.clip(255 * scaled.numpy(), 0, 255).astype(np.uint8)
        assert np.abs(frames[0].astype(int) - expected_first.astype(int)).mean() < 4
        assert np.abs(frames[1].astype(int) - frames[0].astype(int)).mean() > 10  # later frames are generated


def test_same_seed_same_video(host, checkpoints):
    """Seed 42, then 7, then 42 again: ComfyUI's classic cache holds one result per node, so
    the third render is computed afresh and must equal the first. The frames are saved as
    PNGs here: H.264 (PyAV's libx264) is not bit-reproducible, the same frames encoded twice
    differ by a few levels."""
    api = tiny_api("text_to_video", host, checkpoints)
    del api["20"]
    api["6"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": ""}}
    renders = []
    for index, seed in enumerate((42, 7, 42)):
        api["4"]["inputs"]["seed"] = seed
        api["6"]["inputs"]["filename_prefix"] = f"univg/seed_{index}"
        run = host.run(api)
        assert run.success, run.error()
        items = run.outputs["6"]["images"]
        renders.append(np.stack([np.asarray(Image.open(host.output_dir / i["subfolder"] / i["filename"]))
                                 for i in items]))
    assert renders[0].shape == (TINY["frames"], 64, 64, 3)
    assert np.array_equal(renders[0], renders[2])
    assert not np.array_equal(renders[0], renders[1])


# ------------------------------------------------------------------------- bad input


def expect_failure(host, api, *fragments):
    before = output_listing(host)
    run = host.run(api)
    assert not run.success
    message = run.error()
    for fragment in fragments:
        assert fragment in message, message
    assert output_listing(host) == before  # no partial output file
    return message


def test_missing_checkpoint(host, checkpoints):
    api = tiny_api("text_to_video", host, checkpoints)
    api["1"]["inputs"]["ckpt_name"] = "does_not_exist.ckpt"
    expect_failure(host, api, "Value not in list", "does_not_exist.ckpt")


def test_image_checkpoint_instead_of_video(host, checkpoints):
    api = tiny_api("text_to_video", host, checkpoints)
    api["1"]["inputs"]["ckpt_name"] = checkpoints["image_model"]
    expect_failure(host, api, "not a video UNet")


def test_corrupted_checkpoint(host, checkpoints):
    api = tiny_api("text_to_video", host, checkpoints)
    api["1"]["inputs"]["ckpt_name"] = checkpoints["corrupted"]
    expect_failure(host, api, "truncated or corrupted")


def test_image_of_wrong_size_without_scaling(host, checkpoints):
    api = tiny_api("animation", host, checkpoints)
    api["4"]["inputs"]["image"] = ["7", 0]  # the 512x320 example straight in: fine; a 100x70 image is not
    api["7"]["inputs"]["image"] = "odd_size.png"
    api["8"]["inputs"]["image"] = ["7", 0]
    expect_failure(host, api, "multiples of 64", "100x70", "Image Scale")


def test_frames_and_sizes_out_of_range(host, checkpoints):
    api = tiny_api("text_to_video", host, checkpoints)
    api["4"]["inputs"]["frames"] = 0
    expect_failure(host, api, "frames")
    api = tiny_api("text_to_video", host, checkpoints)
    api["4"]["inputs"]["width"] = 100
    expect_failure(host, api, "multiples of 64", "100x64")


def test_image_without_clip_vision(host, checkpoints):
    api = tiny_api("image_to_video", host, checkpoints)
    del api["8"]["inputs"]["clip_vision"]
    expect_failure(host, api, "no CLIP_VISION")


def test_wrong_model_for_the_sampler(host, checkpoints):
    api = tiny_api("text_to_video", host, checkpoints)
    api["1"]["inputs"]["ckpt_name"] = checkpoints["univg_animation.safetensors"]
    expect_failure(host, api, "animation model", "UniVG Animation Sampler")


@pytest.mark.parametrize("workflow, node_class, field", [
    ("text_to_video", "UniVGBaseSampler", "text_weight"),
    ("text_to_video", "UniVGBaseSampler", "image_weight"),  # no image: it would have rendered silently
    ("animation", "UniVGAnimationSampler", "text_weight"),
    ("animation_custom_sampler", "UniVGMultiConditionGuider", "image_weight"),
    ("base_then_super_resolution", "UniVGUpscaler", "strength"),
])
def test_a_non_finite_setting_is_refused_by_name_before_sampling(host, checkpoints, workflow, node_class, field):
    """NaN passes ComfyUI's range check (every comparison with it is false): the node refuses it,
    naming the input, before any step runs."""
    api = tiny_api(workflow, host, checkpoints)
    (node,) = [n for n in api.values() if n["class_type"] == node_class]
    node["inputs"][field] = float("nan")
    message = expect_failure(host, api, f"{field} must be a finite number, got nan")
    assert "fp16" not in message and "step" not in message, message


@pytest.mark.parametrize("damage, fragment", [("nan", "turned finite latents into NaN/inf"),
                                              ("zero", "every pixel of every frame decoded to")])
def test_a_vae_that_decodes_to_nothing_is_an_error_not_a_black_video(host, checkpoints, damage, fragment):
    loader = host.nodes.NODE_CLASS_MAPPINGS["UniVGCheckpointLoader"]()
    _, _, vae, _ = loader.load(checkpoints["univg_base.safetensors"], "fp32")
    with torch.no_grad():
        for parameter in vae.first_stage_model.parameters():
            parameter.fill_(float("nan") if damage == "nan" else 0.0)
    decoder = host.nodes.NODE_CLASS_MAPPINGS["UniVGVAEDecode"]()
    latents = {"samples": torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    with pytest.raises(ValueError, match=fragment):
        decoder.decode(latents, vae, 2, True)
    latents["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="the latents hold NaN/inf"):
        decoder.decode(latents, vae, 2, True)
