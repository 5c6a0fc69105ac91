"""The training path UniVG Mini takes: its TAESD-layout VAE, the text and vision towers in their
own files (OpenCLIP layout, as ComfyUI's loaders read them), its model
configuration and starting checkpoint. Tiny sizes; the real run is python -m univg_core.cli.train_mini."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from univg_core.checkpoints import load_checkpoint, save_checkpoint
from univg_core.cli import mini_stages, train_mini
from univg_core.mini import models
from univg_core.models.tiny_vae import TinyVAE
from univg_core.training.cache import CachedClips
from univg_core.training.data import DataError
from univg_core.training.trainer import TrainOptions, train
from univg_core.training.vae_encoder import VAEError, load_vae_encoder

from conftest import randomize_, tiny_models
from training_fixtures import TEXT_PREFIX, tiny_encoder_states, write_dataset

QUIET = lambda message: None  # noqa: E731


def test_training_encodes_with_the_mini_vae_as_comfyui_does():
    vae = randomize_(TinyVAE(), seed=3).eval()
    encoder = load_vae_encoder(vae.state_dict(), scale_factor=0.5)
    frames = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = vae.encode((frames + 1) / 2) * 0.5  # ComfyUI's TAESD encode maps [-1, 1] to [0, 1] the same way
    torch.testing.assert_close(encoder(frames), expected)
    state = {k: v for k, v in vae.state_dict().items() if k != "taesd_encoder.2.weight"}
    with pytest.raises(VAEError, match="TAESD layout of UniVG Mini"):
        load_vae_encoder(state)


@pytest.fixture(scope="module")
def mini_workspace(tmp_path_factory):
    """A tiny Mini-style init (UNet + Resampler + TAESD VAE, no encoders inside) and tower files."""
    root = tmp_path_factory.mktemp("mini_training")
    write_dataset(root / "data", clips=2, frames=8)
    config, unet, image_proj = tiny_models("univg_base")
    config = dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, scale_factor=0.7))
    save_checkpoint(root / "init.safetensors", config, unet, image_proj)
    save_file({k: v.contiguous() for k, v in randomize_(TinyVAE(), seed=5).state_dict().items()},
              str(root / "vae.safetensors"))
    encoders = tiny_encoder_states()
    text = {key.removeprefix("model."): value.contiguous() for key, value in encoders[TEXT_PREFIX].items()}
    vision = {key.removeprefix("model."): value.contiguous() for key, value in encoders["embedder."].items()}
    save_file(text, str(root / "text.safetensors"))
    save_file(vision, str(root / "vision.safetensors"))
    return root


def mini_options(root, **changes) -> TrainOptions:
    values = dict(
        task="base", init=str(root / "init.safetensors"), data=str(root / "data"), out=str(root / "base.safetensors"),
        vae=str(root / "vae.safetensors"), text_encoder=str(root / "text.safetensors"), image_encoder=str(root / "vision.safetensors"),
        frames=4, height=64, width=64, max_frames=8, steps=1, batch_size=2, lr=1e-3, log_every=1,
        gradient_checkpointing=False, save_dtype="fp32", cache_dir=str(root / "cache"),
    )
    values.update(changes)
    return TrainOptions(**values)


def test_a_mini_step_trains_with_tower_files(mini_workspace):
    out = train(mini_options(mini_workspace, image_tokens=False), log=QUIET)
    loaded = load_checkpoint(out)
    assert loaded.config.family == "univg_base" and loaded.config.schedule.scale_factor == 0.7
    assert not loaded.vae_state_dict and not loaded.text_encoder_state_dict  # they stay in their own files
    cached = CachedClips(sorted((mini_workspace / "cache").glob("[0-9a-f]*.pt")), frames=4)
    item = cached[0]
    assert item["latents"].shape == (4, 4, 8, 8) and "image" not in item and item["text"].shape == (77, 32)
    trained = load_file(str(out))
    before = load_file(str(mini_workspace / "init.safetensors"))
    changed = [k for k in before if k.startswith("model.diffusion_model.") and not torch.equal(before[k], trained[k])]
    assert changed, "one training step changed no UNet weight"
    silenced = [k for k in trained if "to_v_ip" in k]
    assert silenced and all(not trained[k].any() for k in silenced)  # image tokens it never saw cannot reach it


def test_a_missing_tower_file_is_named(mini_workspace):
    options = mini_options(mini_workspace, text_encoder=str(mini_workspace / "nope.safetensors"),
                           cache_dir=str(mini_workspace / "cache2"), out=str(mini_workspace / "never.safetensors"))
    with pytest.raises(DataError, match="nope.safetensors: cannot read the text encoder file"):
        train(options, log=QUIET)
    options = mini_options(mini_workspace, text_encoder=None, cache_dir=str(mini_workspace / "cache3"),
                           out=str(mini_workspace / "never.safetensors"))
    with pytest.raises(DataError, match="--text-encoder"):
        train(options, log=QUIET)
    options = mini_options(mini_workspace, vae=None, cache_dir=str(mini_workspace / "cache4"),
                           out=str(mini_workspace / "never.safetensors"))
    with pytest.raises(DataError, match="no VAE .* own file with --vae"):
        train(options, log=QUIET)


def test_the_mini_base_configuration_and_its_starting_file(tmp_path):
    config = models.mini_base_config(scale_factor=0.6)
    assert models.parameter_count(config) < 5_000_000  # under 10 MB in fp16 (the shipped total: test_mini_install)
    assert config.unet.context_dim == 1024 and config.image_proj.embedding_dim == 1280
    assert models.latent_scale_factor(torch.full((1000,), 2.0) * torch.tensor([1.0, -1.0]).repeat(500)) == 0.5
    path = tmp_path / "init.safetensors"
    models.write_base_init(path, 0.6)
    loaded = load_checkpoint(path)
    assert loaded.config == config and loaded.image_proj is not None
    assert not loaded.unet.out[2].weight.any()  # a fresh F_B's output layer starts at zero, as lvdm's
    assert not any("relative_position" in name for name, _ in loaded.unet.named_parameters())


def test_the_relative_position_experiment_starts_from_its_own_file_and_trains_f_b_alone(tmp_path, capsys):
    models.write_base_init(tmp_path / "relpos.safetensors", 0.6, relative_position=True)
    loaded = load_checkpoint(tmp_path / "relpos.safetensors")
    assert loaded.config.unet.use_relative_position
    assert sum("relative_position" in name for name, _ in loaded.unet.named_parameters()) > 0
    with pytest.raises(SystemExit) as stopped:
        train_mini.main(["--relative-position", "--stages", "base,animation", "--work", str(tmp_path)])
    assert stopped.value.code == 2 and "use it with --stages base" in capsys.readouterr().err


def test_a_mini_step_with_image_tokens_caches_them(mini_workspace):
    train(mini_options(mini_workspace, out=str(mini_workspace / "with_image.safetensors"),
                       cache_dir=str(mini_workspace / "cache_image")), log=QUIET)
    cached = CachedClips(sorted((mini_workspace / "cache_image").glob("[0-9a-f]*.pt")), frames=4)
    assert cached[0]["image"].shape[-1] == 24  # the tiny vision tower's width


def test_train_mini_stops_on_a_world_set_of_other_clips_and_says_how_to_redo_it(tmp_path, capsys):
    from univg_core.mini.dataset import set_mismatch, write_dataset as write_world_set

    write_world_set(tmp_path / "world64", count=2, seed=0, frames=3, size=16, log=None)
    assert set_mismatch(tmp_path / "world64", frames=3, count=2) is None
    assert set_mismatch(tmp_path / "world64", frames=3, count=5) == f"{tmp_path / 'world64'} holds 2 clips, not 5"
    assert train_mini.main(["--stages", "world", "--work", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'world64'} holds clips of 3 frames, not {models.FRAMES}" in error
    assert "delete the folder" in error and str(tmp_path / "cache" / "world64") in error


def test_train_mini_stops_on_a_kept_vae_of_another_object_weight(tmp_path, capsys):
    """A VAE file kept in the work folder from a run with another --vae-object-weight is named,
    not silently reused: the UNets would learn another encoder's latents than the run asks."""
    from safetensors.torch import save_file

    from univg_core.models.tiny_vae import TinyVAE

    joint = tmp_path / mini_stages.JOINT_VAE_FILE
    state = {key: value.contiguous() for key, value in TinyVAE().state_dict().items()}
    save_file(state, str(joint), metadata={"univg.scale_factor": "0.5"})  # as the shipped recipe writes it
    arguments = ["--stages", "vae", "--work", str(tmp_path), "--weights", str(tmp_path / "weights")]
    assert train_mini.main(arguments + ["--vae-object-weight", "4"]) == 2
    error = capsys.readouterr().err
    assert f"{joint} was trained with --vae-object-weight 0, this run asks 4; delete it" in error
    save_file(state, str(joint), metadata={"univg.scale_factor": "0.5", mini_stages.OBJECT_WEIGHT_KEY: "4"})
    assert train_mini.main(arguments) == 2  # the other way round: a kept weight-4 file, a default run
    assert "was trained with --vae-object-weight 4, this run asks 0" in capsys.readouterr().err


def test_the_first_frame_model_learns_first_frames_alone_and_drops_its_silenced_image_branch(mini_workspace):
    """train_mini's first_frame stage: windows of one frame, one per clip (the clip's first), text
    only; then written without the image branch, which leaves its outputs exactly as they were."""
    out = train(mini_options(mini_workspace, out=str(mini_workspace / "first_frame_run.safetensors"),
                             cache_dir=str(mini_workspace / "cache_first"), image_tokens=False, frames=1,
                             window_stride=8, ema_decay=0.9), log=QUIET)
    cached = CachedClips(sorted((mini_workspace / "cache_first").glob("[0-9a-f]*.pt")), frames=1)
    assert [start for _, _, start in cached.windows] == [0, 0]  # two clips, their first frames
    torch.testing.assert_close(cached[0]["latents"], torch.load(cached.files[0], weights_only=True)["latents"][:, :1].float())

    slim = mini_workspace / "first_frame.safetensors"
    config = models.write_text_only(out, slim)
    assert not config.unet.image_cross_attention and config.image_proj is None
    full, text_only = load_checkpoint(out), load_checkpoint(slim)
    assert text_only.config == config and text_only.image_proj is None
    assert not any("_ip." in key for key in load_file(str(slim)))
    assert slim.stat().st_size < out.stat().st_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 1, 8, 8, generator=generator)
    text = torch.randn(2, 77, config.unet.context_dim, generator=generator)
    clip_tokens = torch.randn(2, 9, full.config.image_proj.embedding_dim, generator=generator)
    with torch.no_grad():
        expected = text_only.unet(x, torch.tensor([999, 300]), text)
        assert torch.equal(full.unet(x, torch.tensor([999, 300]), text), expected)
        with_image = full.unet(x, torch.tensor([999, 300]), text, image_context=full.image_proj(clip_tokens))
        torch.testing.assert_close(with_image, expected, rtol=0, atol=1e-6)  # the silenced branch adds nothing

    state = load_file(str(out))
    key = next(key for key in state if ".to_v_ip." in key)
    state[key] = torch.ones_like(state[key])
    live = mini_workspace / "live_image_branch.safetensors"
    from safetensors import safe_open
    with safe_open(str(out), "pt") as handle:
        save_file(state, str(live), metadata=handle.metadata())
    with pytest.raises(ValueError, match="image branch is in use .*to_v_ip.* cannot be dropped"):
        models.write_text_only(live, mini_workspace / "never.safetensors")


def test_train_mini_publishes_f_sr_without_the_image_branch_it_never_reads(tmp_path, monkeypatch):
    """F_SR and its no-BGN twin learn text only (their to_v_ip stay zero): train_mini writes them
    without the branch, 2.3 MB less each; the run's own file in --work keeps it. F_A keeps its
    (silenced) branch: the animation workflows hand the first frame over through UniVG
    Multi-Conditioning, which needs the CLIP_VISION the loader returns only for a model with one.
    The image-reading F_B keeps its branch and learns with the object's cells weighing 5."""
    from univg_core.models.tiny_vae import ShuffleTinyVAE

    weights = tmp_path / "weights"
    weights.mkdir()
    config, unet, image_proj = tiny_models("univg_base")
    save_checkpoint(weights / models.BASE_FILE, config, unet, image_proj)
    arguments = ["--work", str(tmp_path / "work"), "--weights", str(weights)]
    with pytest.raises(SystemExit, match="univg_mini_sr_vae.safetensors is missing: F_SR works in its latents"):
        train_mini.main(["--stages", "sr"] + arguments)
    save_file({k: v.contiguous() for k, v in ShuffleTinyVAE().state_dict().items()}, str(weights / models.SR_VAE_FILE),
              metadata={"univg.scale_factor": "1.5"})
    asked = {}

    def silenced_run(options, log):
        asked[options.task, options.bgn] = options
        with torch.no_grad():
            for name, parameter in unet.named_parameters():
                if ".to_v_ip." in name:
                    parameter.zero_()
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(options.out, config, unet, image_proj)
        return options.out

    monkeypatch.setattr(mini_stages, "train", silenced_run)
    stages = "base_image,animation,sr,animation_no_bgn,sr_no_bgn,interpolation,interpolation_no_bgn"
    assert train_mini.main(["--stages", stages] + arguments) == 0
    assert sorted(asked) == [("animation", False), ("animation", True), ("base", True), ("interpolation", False),
                             ("interpolation", True), ("sr", False), ("sr", True)]
    # F_I fine-tunes F_A, BGN in the SNR-matched window; its twin without BGN is written text-only
    for bgn in (True, False):
        interpolation = asked["interpolation", bgn]
        assert interpolation.init == str(weights / models.ANIMATION_FILE) and not interpolation.image_tokens
    assert (asked["interpolation", True].t_m, asked["interpolation", True].t_n) == (567, 875)
    assert load_checkpoint(weights / models.INTERPOLATION_FILE).image_proj is not None
    assert load_checkpoint(weights / models.INTERPOLATION_NO_BGN_FILE).image_proj is None
    for bgn in (True, False):  # F_SR learns in its own VAE's latents, from F_B with that VAE's scale factor
        sr = asked["sr", bgn]
        assert sr.vae == str(weights / models.SR_VAE_FILE) and sr.clean_share == 0.2
        assert sr.data == str(tmp_path / "work" / mini_stages.SR_SET)
        start = load_checkpoint(sr.init)
        assert start.config.schedule.scale_factor == 1.5 and models.companion_vae(start.metadata) == models.SR_VAE_FILE
    assert not any(options.image_tokens for options in asked.values() if options.task == "animation")
    assert asked["base", True].image_tokens and asked["base", True].object_weight == 4.0
    assert {options.object_weight for options in asked.values() if options.task != "base"} == {0.0}
    assert load_checkpoint(weights / models.BASE_IMAGE_FILE).image_proj is not None
    for name in ("sr", "sr_no_bgn"):
        published = load_checkpoint(weights / f"univg_mini_{name}.safetensors")
        assert published.image_proj is None and not published.config.unet.image_cross_attention
        assert load_checkpoint(tmp_path / "work" / "runs" / f"univg_mini_{name}.safetensors").image_proj is not None
    for name in ("animation", "animation_no_bgn"):
        assert load_checkpoint(weights / f"univg_mini_{name}.safetensors").image_proj is not None


def test_the_recipe_table_is_the_command_line():
    """Every setting of train_mini's RECIPE is an option with the table's value, under its stage's
    heading in --help; no setting is named twice; the stages run in the table's order."""
    settings = [setting for stage in train_mini.RECIPE for setting in stage.settings] + list(train_mini.COMMON_SETTINGS)
    names = [setting.name for setting in settings]
    assert len(names) == len(set(names))
    defaults = vars(train_mini.recipe_parser().parse_args([]))
    assert all(defaults[setting.name] == setting.value and type(defaults[setting.name]) is type(setting.value)
               for setting in settings)
    assert train_mini.STAGES[:5] == ("world", "vae", "sr_vae", "towers", "base")
    help_text = train_mini.recipe_parser().format_help()
    assert "stage interpolation:" in help_text and "--interpolation-t-n" in help_text
    parsed = train_mini.recipe_parser().parse_args(["--interpolation-steps", "7", "--lr", "0.001"])
    assert parsed.interpolation_steps == 7 and parsed.lr == 0.001


def test_the_interpolation_stages_pass_the_object_weight_and_the_shipped_recipe_has_none(monkeypatch, tmp_path):
    """--interpolation-object-weight reaches F_I's and its twin's runs; its default (0) is the
    shipped recipe, whose loss is the plain one."""
    runs = []
    monkeypatch.setattr(mini_stages, "_train", lambda *args, **changes: runs.append(changes))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / models.ANIMATION_FILE).write_bytes(b"")
    args = train_mini.recipe_parser().parse_args(["--interpolation-object-weight", "4"])
    args.work, args.weights = tmp_path, weights
    mini_stages.stage_interpolation(args)
    mini_stages.stage_interpolation_no_bgn(args)
    assert [run["object_weight"] for run in runs] == [4.0, 4.0] and [run["bgn"] for run in runs] == [True, False]
    assert train_mini.recipe_parser().parse_args([]).interpolation_object_weight == 0.0
