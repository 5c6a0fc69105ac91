import dataclasses
import os
import re

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY_FAMILIES, TINY_OVERRIDES, randomize_, tiny_inputs, tiny_models
from univg_core.checkpoints import (
    CheckpointError,
    checkpoint_state_dict,
    config_metadata,
    infer_unet_config,
    load_checkpoint,
    save_checkpoint,
)
from univg_core.configs import PRESETS, UNetConfig, get_preset
from univg_core.models.unet3d import UNet3D, expand_input_channels


def outputs(unet, image_proj, config, frames=4):
    x, t, context, clip_tokens = tiny_inputs(config, frames=frames)
    image_context = image_proj(clip_tokens) if image_proj is not None else None
    with torch.no_grad():
        return unet(x, t, context=context, image_context=image_context, fs=5)


def original_layout(unet, image_proj, extra=True):
    """A file as the lvdm code bases write it: Lightning's state_dict with every component."""
    state = checkpoint_state_dict(unet, image_proj)
    if extra:
        state["first_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3)
        state["cond_stage_model.model.token_embedding.weight"] = torch.randn(10, 4)
        state["embedder.model.visual.proj"] = torch.randn(4, 4)
        state["betas"] = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return state


def write_ckpt(tmp_path, state, name="model.ckpt", wrapper="state_dict"):
    path = tmp_path / name
    if wrapper == "state_dict":
        torch.save({"state_dict": state, "global_step": 10}, path)
    elif wrapper == "module":
        torch.save({"module": {"_forward_module." + k: v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)
    return path


# Same tensors as another family: UniVG's own files carry their family in metadata, DynamiCrafter
# 1024 in its scale_arr buffer (tested below); a bare tiny file needs `family=`.
TOLD_APART_ONLY_BY_NAME = {"dynamicrafter_1024", "univg_base", "univg_animation", "univg_interpolation", "univg_sr"}


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_original_ckpt_round_trip_identical_outputs(tmp_path, family):
    config, unet, image_proj = tiny_models(family)
    expected = outputs(unet, image_proj, config)
    path = write_ckpt(tmp_path, original_layout(unet, image_proj))
    if family in TOLD_APART_ONLY_BY_NAME:
        loaded = load_checkpoint(path, family=family, **TINY_OVERRIDES)
    else:
        loaded = load_checkpoint(path, **TINY_OVERRIDES)
    assert loaded.family == family
    assert loaded.config.unet == config.unet
    assert loaded.config.image_proj == config.image_proj
    torch.testing.assert_close(outputs(loaded.unet, loaded.image_proj, config), expected, rtol=0, atol=0)
    assert set(loaded.vae_state_dict) == {"encoder.conv_in.weight"}
    assert set(loaded.text_encoder_state_dict) == {"model.token_embedding.weight"}
    assert set(loaded.image_encoder_state_dict) == {"model.visual.proj"}


@pytest.mark.parametrize(
    "family,prediction,zero_snr",
    [
        ("videocrafter2_t2v_512", "eps", False),
        ("videocrafter1_i2v_512", "eps", False),
        ("dynamicrafter_256", "eps", False),
        ("dynamicrafter_512", "v", True),
        ("videocrafter1_t2v_1024", "eps", False),
    ],
)
def test_family_and_schedule_inferred(tmp_path, family, prediction, zero_snr):
    _, unet, image_proj = tiny_models(family)
    loaded = load_checkpoint(write_ckpt(tmp_path, original_layout(unet, image_proj)), **TINY_OVERRIDES)
    assert (loaded.family, loaded.prediction, loaded.schedule.zero_terminal_snr) == (family, prediction, zero_snr)


def test_dynamicrafter_1024_told_apart_by_scale_arr(tmp_path):
    _, unet, image_proj = tiny_models("dynamicrafter_512")
    state = original_layout(unet, image_proj)
    state["scale_arr"] = torch.cat([torch.linspace(1.0, 0.3, 400), torch.full((600,), 0.3)])
    loaded = load_checkpoint(write_ckpt(tmp_path, state), **TINY_OVERRIDES)
    assert loaded.family == "dynamicrafter_1024"
    assert loaded.schedule.scale_base == pytest.approx(0.3)
    assert loaded.prediction == "v"


def test_framestride_embed_is_renamed(tmp_path):
    _, unet, image_proj = tiny_models("dynamicrafter_256")
    state = original_layout(unet, image_proj)
    assert "model.diffusion_model.framestride_embed.0.weight" in state
    assert not any(".fps_embedding." in k for k in state)
    loaded = load_checkpoint(write_ckpt(tmp_path, state), **TINY_OVERRIDES)
    torch.testing.assert_close(loaded.unet.fps_embedding[0].weight, unet.fps_embedding[0].weight)


@pytest.mark.parametrize("wrapper", ["module", "bare"])
def test_other_wrappers(tmp_path, wrapper):
    config, unet, image_proj = tiny_models("videocrafter1_i2v_512")
    expected = outputs(unet, image_proj, config)
    loaded = load_checkpoint(write_ckpt(tmp_path, original_layout(unet, image_proj), wrapper=wrapper), **TINY_OVERRIDES)
    torch.testing.assert_close(outputs(loaded.unet, loaded.image_proj, config), expected, rtol=0, atol=0)


def test_safetensors_round_trip_with_metadata(tmp_path):
    config, unet, image_proj = tiny_models("univg_animation")
    expected = outputs(unet, image_proj, config)
    path = tmp_path / "anim.safetensors"
    save_checkpoint(path, config, unet, image_proj)
    loaded = load_checkpoint(path)  # the metadata carries what the shapes cannot
    assert loaded.config == config
    assert (loaded.config.bgn_t_m, loaded.config.bgn_t_n) == (600, 990)
    torch.testing.assert_close(outputs(loaded.unet, loaded.image_proj, config), expected, rtol=0, atol=0)


def test_metadata_of_earlier_versions_still_loads(tmp_path):
    """Files written before default_fps / guidance_scale left ModelConfig carry them in their metadata."""
    import json

    config, unet, image_proj = tiny_models("univg_animation")
    metadata = config_metadata(config)
    old_config = json.loads(metadata["univg.config"])
    old_config.update(default_fps=8, guidance_scale=7.5)
    path = tmp_path / "earlier.safetensors"
    state = {k: v.contiguous() for k, v in checkpoint_state_dict(unet, image_proj).items()}
    save_file(state, str(path), metadata={**metadata, "univg.config": json.dumps(old_config)})
    assert load_checkpoint(path).config == config


def test_plain_safetensors_without_metadata(tmp_path):
    config, unet, image_proj = tiny_models("dynamicrafter_512")
    path = tmp_path / "dc.safetensors"
    save_file({k: v.contiguous() for k, v in original_layout(unet, image_proj).items()}, str(path))
    loaded = load_checkpoint(path, **TINY_OVERRIDES)
    assert loaded.family == "dynamicrafter_512"
    torch.testing.assert_close(outputs(loaded.unet, loaded.image_proj, config), outputs(unet, image_proj, config))


def test_dtype_and_overrides(tmp_path):
    _, unet, image_proj = tiny_models("videocrafter2_t2v_512")
    path = write_ckpt(tmp_path, original_layout(unet, image_proj))
    loaded = load_checkpoint(path, dtype=torch.bfloat16, prediction="v", **TINY_OVERRIDES)
    assert loaded.unet.dtype == torch.bfloat16 and loaded.prediction == "v"
    with pytest.raises(TypeError, match="unknown override"):
        load_checkpoint(path, no_such_option=1)


def test_expand_input_channels_keeps_outputs():
    config, unet, _ = tiny_models("univg_base")
    x, t, context, _ = tiny_inputs(config)
    with torch.no_grad():
        before = unet(x, t, context=context)
        expand_input_channels(unet, 8)
        after = unet(torch.cat([x, torch.randn_like(x)], dim=1), t, context=context)
    assert unet.config.in_channels == 8 and unet.input_blocks[0][0].weight.shape[1] == 8
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="cannot shrink"):
        expand_input_channels(unet, 4)


# ------------------------------------------------------------------ bad input


@pytest.fixture
def good_state():
    _, unet, image_proj = tiny_models("dynamicrafter_512")
    return original_layout(unet, image_proj)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.ckpt")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("these are not the weights you are looking for\n" * 10)
    with pytest.raises(CheckpointError, match="notes.ckpt: not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load_checkpoint(path)


def test_truncated_ckpt(tmp_path, good_state):
    path = write_ckpt(tmp_path, good_state)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.ckpt: truncated or corrupted"):
        load_checkpoint(path)


def test_corrupted_ckpt(tmp_path, good_state):
    path = write_ckpt(tmp_path, good_state)
    data = bytearray(path.read_bytes())
    end = len(data) - 22  # the zip's end-of-central-directory record
    data[end : end + 22] = b"\x00" * 22
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_truncated_safetensors(tmp_path, good_state):
    path = tmp_path / "cut.safetensors"
    save_file({k: v.contiguous() for k, v in good_state.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="cut.safetensors: not a readable .safetensors"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("writer", ["torch_zip", "plain_pickle"])
def test_pickle_that_runs_code_is_refused_naming_what_it_would_call(tmp_path, good_state, writer):
    import pickle

    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": good_state, "hook": Payload()}
    if writer == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert message.startswith("evil.ckpt: the file holds Python objects that would run code"), message
    assert f"{os.system.__module__}.system" in message  # posix.system on Linux
    assert "weights_only" not in message and "False" not in message  # never torch's advice to switch the check off


def test_random_bytes_are_not_called_a_dangerous_pickle(tmp_path):
    path = tmp_path / "noise.ckpt"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
                     .numpy().tobytes().replace(b"PK", b"pk"))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "noise.ckpt: not a PyTorch checkpoint or safetensors file" in message and "neither" in message, message
    assert "run code" not in message and "weights_only" not in message


def test_image_unet_is_rejected(tmp_path):
    image_only = dataclasses.replace(
        get_preset("tiny_videocrafter2_t2v_512").unet,
        temporal_conv=False,
        temporal_attention=False,
        addition_attention=False,
        fs_condition=False,
    )
    sd15_like = randomize_(UNet3D(image_only))
    path = write_ckpt(tmp_path, {"model.diffusion_model." + k: v for k, v in sd15_like.state_dict().items()})
    with pytest.raises(CheckpointError, match="image \\(Stable Diffusion-style\\) UNet, not a video UNet"):
        load_checkpoint(path, **TINY_OVERRIDES)


def test_vae_only_file_has_no_unet(tmp_path):
    path = write_ckpt(tmp_path, {"first_stage_model.encoder.conv_in.weight": torch.randn(8, 3, 3, 3)})
    with pytest.raises(CheckpointError, match="no video UNet found.*first_stage_model"):
        load_checkpoint(path)


def test_missing_unet_key(tmp_path, good_state):
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_v.weight"
    del good_state[key]
    with pytest.raises(CheckpointError, match=re.escape(f"missing 1 keys: {key}")):
        load_checkpoint(write_ckpt(tmp_path, good_state), **TINY_OVERRIDES)


def test_unexpected_unet_key(tmp_path, good_state):
    good_state["model.diffusion_model.input_blocks.1.0.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected 1 keys: model.diffusion_model.input_blocks.1.0.extra.weight"):
        load_checkpoint(write_ckpt(tmp_path, good_state), **TINY_OVERRIDES)


def test_wrong_shape(tmp_path, good_state):
    key = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"
    good_state[key] = torch.zeros(64, 63)
    with pytest.raises(CheckpointError, match=re.escape(f"{key} [64, 63] (expected [64, 64])")):
        load_checkpoint(write_ckpt(tmp_path, good_state), **TINY_OVERRIDES)


def test_wrong_head_width_is_a_clear_error(tmp_path, good_state):
    # without the tiny override the published 64-channel heads do not divide 32 channels
    with pytest.raises(CheckpointError, match="num_head_channels=64 does not divide 32 channels"):
        load_checkpoint(write_ckpt(tmp_path, good_state))


# ------------------------------------------------ full-size layouts on the meta device


def meta_state(preset: str) -> dict:
    with torch.device("meta"):
        unet = UNet3D(get_preset(preset).unet)
    return {k: tuple(v.shape) for k, v in unet.state_dict().items()}, unet


FULL = ["videocrafter2_t2v_512", "videocrafter1_i2v_512", "videocrafter1_t2v_1024",
        "dynamicrafter_256", "dynamicrafter_512", "dynamicrafter_1024", "univg_base", "univg_animation", "univg_interpolation", "univg_sr"]


@pytest.mark.parametrize("preset", FULL)
def test_full_size_layout(preset):
    shapes, unet = meta_state(preset)
    config = get_preset(preset)
    in_channels = config.unet.in_channels
    assert shapes["input_blocks.0.0.weight"] == (320, in_channels, 3, 3)
    assert shapes["time_embed.0.weight"] == (1280, 320) and shapes["time_embed.2.weight"] == (1280, 1280)
    assert shapes["fps_embedding.0.weight"] == (1280, 320) and shapes["fps_embedding.2.weight"] == (1280, 1280)
    assert shapes["out.0.weight"] == (320,) and shapes["out.2.weight"] == (4, 320, 3, 3)
    # the extra 8-head temporal transformer after input_blocks.0 (conv projections)
    assert shapes["init_attn.0.proj_in.weight"] == (8 * 64, 320, 1)
    assert shapes["init_attn.0.transformer_blocks.0.attn1.to_q.weight"] == (512, 512)
    assert unet.init_attn[0].transformer_blocks[0].attn1.heads == 8
    # block tree
    for index, channels in ((1, 320), (2, 320), (4, 640), (5, 640), (7, 1280), (8, 1280)):
        assert shapes[f"input_blocks.{index}.0.in_layers.2.weight"] == (channels, shapes[f"input_blocks.{index}.0.in_layers.2.weight"][1], 3, 3)
        assert shapes[f"input_blocks.{index}.1.proj_in.weight"] == (channels, channels)
        assert shapes[f"input_blocks.{index}.1.transformer_blocks.0.attn2.to_k.weight"] == (channels, 1024)
        assert shapes[f"input_blocks.{index}.1.transformer_blocks.0.ff.net.0.proj.weight"] == (8 * channels, channels)
        assert shapes[f"input_blocks.{index}.2.proj_in.weight"] == (channels, channels)
        assert unet.input_blocks[index][1].transformer_blocks[0].attn1.heads == channels // 64
    for index in (3, 6, 9):
        assert f"input_blocks.{index}.0.op.weight" in shapes
    for index in (10, 11):
        assert not any(k.startswith(f"input_blocks.{index}.1.") for k in shapes)
    assert shapes["input_blocks.4.0.skip_connection.weight"] == (640, 320, 1, 1)
    assert "middle_block.3.in_layers.0.weight" in shapes and "middle_block.2.proj_in.weight" in shapes
    for index in (0, 1):
        assert not any(k.startswith(f"output_blocks.{index}.1.") for k in shapes)
    assert shapes["output_blocks.2.1.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["output_blocks.5.3.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["output_blocks.8.3.conv.weight"] == (640, 640, 3, 3)
    assert shapes["output_blocks.11.2.proj_out.weight"] == (320, 320)
    assert not any(k.startswith("output_blocks.11.3.") for k in shapes)
    # temporal convolution (misspelled as in the originals): GroupNorm, SiLU, [Dropout], Conv3d
    if config.unet.temporal_conv:
        assert shapes["input_blocks.1.0.temopral_conv.conv1.2.weight"] == (320, 320, 3, 1, 1)
        assert shapes["input_blocks.1.0.temopral_conv.conv4.3.weight"] == (320, 320, 3, 1, 1)
        assert shapes["input_blocks.1.0.temopral_conv.conv4.0.weight"] == (320,)
    else:
        assert not any("temopral_conv" in k for k in shapes)
    image = config.unet.image_cross_attention
    assert ("input_blocks.1.1.transformer_blocks.0.attn2.to_k_ip.weight" in shapes) == image
    assert ("input_blocks.1.1.transformer_blocks.0.attn2.alpha" in shapes) == config.unet.image_cross_attention_scale_learnable
    relative = "input_blocks.1.2.transformer_blocks.0.attn1.relative_position_k.embeddings_table"
    assert (relative in shapes) == config.unet.use_relative_position
    if config.unet.use_relative_position:
        assert shapes[relative] == (33, 64)
    # and the inference recovers the preset from the file's tensors alone
    prefix = "model.diffusion_model."
    file_state = {k[len(prefix):]: v for k, v in checkpoint_state_dict(unet).items() if k.startswith(prefix)}
    assert infer_unet_config(file_state, config.unet, preset) == config.unet
    told_by_tensors = ("in_channels", "image_cross_attention", "image_cross_attention_scale_learnable",
                       "temporal_conv", "use_relative_position", "fps_embedding_key")
    assert infer_unet_config(file_state, UNetConfig(), preset) == dataclasses.replace(
        UNetConfig(), **{f: getattr(config.unet, f) for f in told_by_tensors}
    )


def test_full_size_parameter_counts():
    counts = {}
    for preset in ("videocrafter2_t2v_512", "dynamicrafter_512"):
        shapes, unet = meta_state(preset)
        counts[preset] = sum(p.numel() for p in unet.parameters())
    # DynamiCrafter adds to_k_ip/to_v_ip and 4 input channels on top of VideoCrafter2
    assert counts["dynamicrafter_512"] > counts["videocrafter2_t2v_512"] > 1.3e9


def test_presets_all_build_tiny():
    assert all(name in PRESETS for name in [f"tiny_{f}" for f in FULL])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_a_nan_or_inf_anywhere_in_a_tensor_is_found(dtype):
    from univg_core.checkpoints import non_finite_tensors
    from univg_core.checkpoints.files import is_finite

    generator = torch.Generator().manual_seed(0)
    for size in (1, 33, 4097, 1_000_003):
        clean = torch.randn(size, generator=generator).to(dtype)
        assert is_finite(clean)
        for bad in (float("nan"), float("inf"), float("-inf")):
            for where in (0, size - 1, int(torch.randint(0, size, (1,), generator=generator))):
                damaged = clean.clone()
                damaged[where] = bad
                assert not is_finite(damaged), (size, bad, where)
    grid = torch.randn(64, 64, generator=generator).to(dtype).t()  # not contiguous
    grid[3, 5] = float("nan")
    state = {"damaged": grid, "empty": torch.empty(0, dtype=dtype), "steps": torch.tensor([2**31 - 1]), "fine": clean}
    assert non_finite_tensors(state) == "1 of 4 tensors (damaged)"
