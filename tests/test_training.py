"""BGN fine-tuning on the CPU with tiny models and tiny synthetic clips written here."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from univg_core.diffusion import bgn
from univg_core.checkpoints import load_checkpoint
from univg_core.diffusion.schedule import make_alphas_cumprod
from univg_core.training import trainer as trainer_module
from univg_core.training.cache import CachedClips
from univg_core.training.data import DataError, find_clips, read_video
from univg_core.training.model_setup import TrainingSetupError
from univg_core.training.object_weight import loss_weights, object_share, weighted_mse
from univg_core.training.objective import TASKS, condition_latents, noisy_input_and_target
from univg_core.training.trainer import TrainOptions, train

from training_fixtures import write_clip, write_dataset, write_init_checkpoint

ROOT = Path(__file__).resolve().parent.parent
QUIET = lambda message: None  # noqa: E731


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    write_dataset(root / "data", clips=2, frames=12)
    write_init_checkpoint(root / "base.safetensors", "univg_base")
    write_init_checkpoint(root / "t2v.safetensors", "videocrafter2_t2v_512")
    write_init_checkpoint(root / "dynamicrafter.safetensors", "dynamicrafter_512")
    return root


def options(workspace: Path, task: str, out: str, **changes) -> TrainOptions:
    values = dict(
        task=task, init=str(workspace / "base.safetensors"), data=str(workspace / "data"), out=str(workspace / out),
        frames=4, height=64, width=64, max_frames=12, steps=2, lr=1e-3, batch_size=2, log_every=1,
        gradient_checkpointing=False, save_dtype="fp32", precision="fp32", cache_dir=str(workspace / f"cache_{task}"),
    )
    values.update(changes)
    return TrainOptions(**values)


# ------------------------------------------------------------------------ objective


def test_bgn_training_pairs_follow_the_paper():
    """x_t and the regression target of F_A (eps) and F_SR (v), written out from paper 3.4."""
    generator = torch.Generator().manual_seed(0)
    abar = make_alphas_cumprod()
    v_target = torch.randn(3, 4, 5, 4, 4, generator=generator, dtype=torch.float64)
    eps = torch.randn(v_target.shape, generator=generator, dtype=torch.float64)
    lowres = torch.randn(v_target.shape, generator=generator, dtype=torch.float64)
    for task, t_values, condition in (
        ("animation", [100, 800, 990], v_target[:, :, :1].expand_as(v_target)),
        ("sr", [0, 350, 699], lowres),
    ):
        spec = TASKS[task]
        t_m, t_n = spec.bgn_window
        t = torch.tensor(t_values)
        assert torch.equal(condition_latents(spec, v_target, lowres), condition)
        x, target = noisy_input_and_target(spec, v_target, condition, eps, t, abar, spec.bgn_window)
        for i, step in enumerate(t_values):
            a = abar[step]
            weight = min(max((step - t_m) / (t_n - t_m), 0.0), 1.0)
            biased = eps[i] + (a.sqrt() / (1 - a).sqrt()) * weight * (condition[i] - v_target[i])
            expected_x = a.sqrt() * v_target[i] + (1 - a).sqrt() * biased
            expected_target = biased if spec.prediction == "eps" else a.sqrt() * biased - (1 - a).sqrt() * v_target[i]
            torch.testing.assert_close(x[i, :4], expected_x)
            torch.testing.assert_close(target[i], expected_target)
        if spec.concat_first_frame:
            assert x.shape[1] == 8 and torch.equal(x[:, 4:], condition)
        else:
            assert x.shape[1] == 4
    # at t_n the animation input is the condition's own forward process
    spec = TASKS["animation"]
    t = torch.full((3,), spec.bgn_window[1])
    condition = condition_latents(spec, v_target, None)
    x, _ = noisy_input_and_target(spec, v_target, condition, eps, t, abar, spec.bgn_window)
    torch.testing.assert_close(x[:, :4], bgn.inference_start(condition, eps, spec.bgn_window[1], abar))


def test_object_share_counts_the_pixels_off_the_frames_median_colour_per_latent_cell():
    frames = torch.full((2, 3, 16, 16), 0.5)  # gray in [0, 1]
    frames[0, 0, 2:6, 9:13] = 1.0  # a 4x4 block in cell (0, 1) of a 2x2 latent grid
    frames[1, :, :, :] = 0.5 + 0.04  # an even tint is background, not object
    share = object_share(frames * 2 - 1, 2, 2)
    torch.testing.assert_close(share, torch.tensor([[[0.0, 16 / 64], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]))
    with pytest.raises(ValueError, match="do not split into 3x3"):
        object_share(frames, 3, 3)


def test_weighted_mse_is_the_mean_with_unit_weights_and_a_weighted_mean_otherwise():
    prediction, target = torch.zeros(1, 4, 2, 2, 2), torch.zeros(1, 4, 2, 2, 2)
    prediction[:, :, 0, 0, 0] = 1.0  # wrong in one of the 8 cells, in every channel
    assert float(weighted_mse(prediction, target, None)) == pytest.approx(1 / 8)
    assert float(weighted_mse(prediction, target, torch.ones(1, 1, 2, 2, 2))) == pytest.approx(1 / 8)
    share = torch.zeros(2, 2, 2)
    share[0, 0, 0] = 1.0
    assert float(weighted_mse(prediction, target, loss_weights(share, 4.0))) == pytest.approx(5 / 12)


def test_base_task_is_the_standard_forward_process():
    abar = make_alphas_cumprod()
    v_target, eps = torch.randn(2, 4, 3, 4, 4, dtype=torch.float64), torch.randn(2, 4, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([5, 999])
    x, target = noisy_input_and_target(TASKS["base"], v_target, None, eps, t, abar, None)
    a = abar[t].view(2, 1, 1, 1, 1)
    torch.testing.assert_close(x, a.sqrt() * v_target + (1 - a).sqrt() * eps)
    assert torch.equal(target, eps)


def test_training_encoders_read_the_full_size_layouts():
    """The SD VAE encoder and the ViT-H/14 text and vision towers, built from the key names and
    shapes of a real lvdm checkpoint (meta tensors), load strictly with the sizes inferred."""
    from tools.demo_checkpoint import text_tower_shapes, vae_shapes, vision_tower_shapes
    from univg_core.training.clip_towers import TextTower, VisionTower, _tower_config
    from univg_core.training.vae_encoder import VAEEncoder, infer_encoder_config

    def meta(shapes: dict, prefix: str) -> dict:
        return {k[len(prefix):]: torch.empty(v, device="meta") for k, v in shapes.items() if k.startswith(prefix)}

    vae = meta(vae_shapes(), "first_stage_model.")
    config = infer_encoder_config(vae)
    assert (config.ch, config.ch_mult, config.num_res_blocks, config.z_channels, config.downsample) == (128, (1, 2, 4, 4), 2, 4, 8)
    with torch.device("meta"):
        encoder = VAEEncoder(config)
    encoder.load_state_dict({k: v for k, v in vae.items() if k.startswith(("encoder.", "quant_conv."))}, strict=True, assign=True)
    text = meta(text_tower_shapes(), "cond_stage_model.model.")
    config = _tower_config(text, "text")
    assert (config.width, config.layers, config.heads, config.mlp_width, config.context, config.vocab) == (1024, 24, 16, 4096, 77, 49408)
    with torch.device("meta"):
        TextTower(config).load_state_dict(text, strict=True, assign=True)
    vision = meta(vision_tower_shapes(), "embedder.model.visual.")
    vision = {k: v for k, v in vision.items() if k != "proj"}  # the projection head is not used for tokens
    config = _tower_config(vision, "vision")
    assert (config.width, config.layers, config.heads, config.patch, config.image_size) == (1280, 32, 16, 14, 224)
    with torch.device("meta"):
        VisionTower(config).load_state_dict(vision, strict=True, assign=True)


# ----------------------------------------------------------------------------- data


def test_clips_with_sidecar_or_csv_captions(tmp_path):
    write_dataset(tmp_path / "sidecar", clips=2, frames=6)
    write_dataset(tmp_path / "csv", clips=2, frames=6, captions="csv")
    for folder in ("sidecar", "csv"):
        records = find_clips(tmp_path / folder)
        assert [r.path.name for r in records] == ["clip0.mp4", "clip1.mp4"]
        assert records[1].caption == "a coloured square slides right, take 1"


def test_decoded_clip_has_the_asked_size_and_the_moving_square(tmp_path):
    clip = write_clip(tmp_path / "wide.mp4", frames=10, height=48, width=64, fps=12)
    video, rate = read_video(clip, 32, 32, max_frames=8, stride=2)
    assert video.shape == (5, 3, 32, 32) and rate == pytest.approx(6.0)
    assert -1 <= float(video.min()) and float(video.max()) <= 1
    bright = video.mean(1) > 0.2  # the square is the only bright thing
    columns = [float(torch.nonzero(frame)[:, 1].float().mean()) for frame in bright]
    assert columns[-1] > columns[0]  # it slides right


@pytest.mark.parametrize("case", ["missing", "empty", "no_caption", "bad_csv"])
def test_bad_data_folders_are_named(tmp_path, case):
    folder = tmp_path / "data"
    if case != "missing":
        folder.mkdir()
    if case == "no_caption":
        write_clip(folder / "a.mp4", frames=4)
        write_clip(folder / "b.webm.mp4", frames=4)
        (folder / "a.txt").write_text("a caption")
    if case == "bad_csv":
        write_clip(folder / "a.mp4", frames=4)
        (folder / "captions.csv").write_text("name,text\na.mp4,x\n")
    message = {"missing": "does not exist", "empty": "holds no video clips", "no_caption": "have no caption: b.webm.mp4",
               "bad_csv": "columns 'file' and 'caption'"}[case]
    with pytest.raises(DataError, match=message):
        find_clips(folder)


def test_unreadable_and_short_clips_fail_before_training(workspace, tmp_path):
    data = tmp_path / "data"
    write_dataset(data, clips=1, frames=12)
    write_clip(data / "short.mp4", frames=3)
    (data / "short.txt").write_text("too short")
    (data / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (data / "broken.txt").write_text("not a video")
    with pytest.raises(DataError) as error:
        train(options(workspace, "animation", "never.safetensors", data=str(data), cache_dir=str(tmp_path / "c")), log=QUIET)
    text = str(error.value)
    assert "2 of 3 clips are unusable" in text
    assert "broken.mp4: cannot decode the video" in text
    assert "short.mp4: 3 frames (stride 1), fewer than the 4 asked" in text
    assert not (workspace / "never.safetensors").exists()


@pytest.mark.parametrize(
    "task,init,changes,message",
    [
        ("sr", "dynamicrafter.safetensors", {}, "has 8 input channels; the sr task starts from 4"),
        ("base", "dynamicrafter.safetensors", {}, "has 8 input channels; the base task starts from 4"),
        ("animation", "base.safetensors", {"t_m": 990, "t_n": 600}, "BGN window needs 0 <= t_m < t_n <= 999"),
        ("sr", "base.safetensors", {"t_n": 1000}, "BGN window needs"),
        ("base", "base.safetensors", {"t_m": 10}, "trains without BGN"),
        ("base", "base.safetensors", {"zero_terminal_snr": True}, "zero terminal SNR with eps-prediction"),
        ("animation", "base.safetensors", {"frames": 0}, "--frames must be in"),
        ("animation", "base.safetensors", {"out": "x.ckpt"}, "must name a .safetensors"),
        ("animation", "nothing.safetensors", {}, "no such file"),
        ("animation", "base.safetensors", {"bgn": False, "t_n": 900}, "--no-bgn trains without a BGN window"),
        ("sr", "base.safetensors", {"latent_crop": 9}, r"--latent-crop must be in \[1, 8\]"),
        ("base", "base.safetensors", {"object_weight": -1.0}, "--object-weight must be >= 0"),
    ],
)
def test_bad_settings_fail_before_training(workspace, task, init, changes, message):
    changes = dict(changes)
    chosen = options(workspace, task, changes.pop("out", "bad.safetensors"), init=str(workspace / init), **changes)
    with pytest.raises(TrainingSetupError, match=message):
        train(chosen, log=QUIET)


# ---------------------------------------------------------------------------- training


def fixed_draws(clips: CachedClips):
    """One clip window under 8 fixed (t, noise) draws spread over [50, 990]: the same for every model."""
    spec = TASKS["animation"]
    generator = torch.Generator().manual_seed(123)
    item = clips[0]
    latents = item["latents"].unsqueeze(0).expand(8, -1, -1, -1, -1)
    t = torch.linspace(50, 990, 8).long()
    eps = torch.randn(latents.shape, generator=generator)
    condition = condition_latents(spec, latents, None)
    x, target = noisy_input_and_target(spec, latents, condition, eps, t, make_alphas_cumprod(), spec.bgn_window)
    return item, x, t, target


def test_tiny_animation_model_overfits_a_moving_square(workspace, tmp_path):
    data = tmp_path / "one"
    write_dataset(data, clips=1, frames=4)
    cache = tmp_path / "cache"
    chosen = options(workspace, "animation", "overfit.safetensors", data=str(data), cache_dir=str(cache), steps=40,
                     lr=3e-3, batch_size=2, text_dropout=0.0, image_dropout=0.0, offset_noise=0.0, dropout=0.0,
                     log_every=10)
    out = train(chosen, log=QUIET)
    clips = CachedClips(sorted(p for p in cache.glob("*.pt") if p.name != "null.pt"), 4)
    item, x, t, target = fixed_draws(clips)
    before = float(target.pow(2).mean())  # the init's zero-initialised output layer predicts 0
    loaded = load_checkpoint(out)
    with torch.no_grad():
        image = loaded.image_proj(item["image"].unsqueeze(0).expand(8, -1, -1))
        output = loaded.unet(x, t, context=item["text"].unsqueeze(0).expand(8, -1, -1), image_context=image)
    after = float(torch.nn.functional.mse_loss(output, target))
    assert after < 0.5 * before, (after, before)


def test_resume_continues_where_a_crash_stopped(workspace, monkeypatch):
    straight = train(options(workspace, "animation", "straight.safetensors", steps=4, ema_decay=0.5), log=QUIET)
    real_make_batch = trainer_module.make_batch
    calls = {"n": 0}

    def crash_on_third_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real_make_batch(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "make_batch", crash_on_third_step)
    crashed = options(workspace, "animation", "resumed.safetensors", steps=4, ema_decay=0.5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed, log=QUIET)
    assert torch.load(crashed.state_path, weights_only=True)["step"] == 2  # both finished steps kept
    assert not Path(crashed.out).exists()
    monkeypatch.setattr(trainer_module, "make_batch", real_make_batch)
    messages = []
    resumed = train(crashed, log=messages.append)
    assert any("resumed" in m and "at step 2" in m for m in messages)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    other = options(workspace, "animation", "resumed.safetensors", steps=4, ema_decay=0.5, batch_size=1)
    with pytest.raises(TrainingSetupError, match="used other settings"):
        train(other, log=QUIET)


def test_latent_crops_take_the_same_window_of_the_clip_and_its_degraded_copy():
    latents = torch.arange(2 * 4 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 4, 3, 16, 16)
    corners = set()
    for seed in range(12):
        weights = latents[:, :1] + 2e6
        crop, low, crop_weights = trainer_module._random_crop(latents, latents + 1e6, weights, 8,
                                                             torch.Generator().manual_seed(seed))
        assert crop.shape == (2, 4, 3, 8, 8) and torch.equal(low - 1e6, crop)
        assert torch.equal(crop_weights - 2e6, crop[:, :1])
        top, left = divmod(int(crop[0, 0, 0, 0, 0]), 16)
        assert 0 <= top <= 8 and 0 <= left <= 8 and torch.equal(crop, latents[..., top:top + 8, left:left + 8])
        corners.add((top, left))
    assert len(corners) > 6  # the window moves


def test_object_weight_caches_each_cells_object_share_and_weighs_the_loss_with_it(workspace, tmp_path):
    """--object-weight 4: the clips are cached with each latent cell's share of pixels off the frame's
    median colour (the fixture's bright square, and the dark gradient's far ends), a batch carries
    1 + 4 x share as its loss weights, and the run trains and resumes under its own signature."""
    chosen = options(workspace, "base", "object_weight.safetensors", steps=1, object_weight=4.0,
                     cache_dir=str(tmp_path / "cache"))
    out = train(chosen, log=QUIET)
    assert load_checkpoint(out).config.family == "univg_base"
    files = sorted(p for p in (tmp_path / "cache").glob("*.pt") if p.name != "null.pt")
    entry = torch.load(files[0], weights_only=True)
    share = entry["object"].float()
    assert share.shape == (12, 8, 8) and share.min() >= 0 and share.max() <= 1
    # the 21-pixel square from row 21 covers latent rows 3 and 4 whole; every frame keeps background cells
    assert torch.all(share[:, 3:5].amax(dim=-1) == 1) and torch.all((share == 0).flatten(1).any(dim=1))
    clips = CachedClips(files, 4)
    batch = trainer_module.make_batch([0, 1], clips, TASKS["base"], None, make_alphas_cumprod(), chosen, True, 0.0, 0.0)
    assert batch.weights.shape == (2, 1, 4, 8, 8)
    expected = torch.stack([1 + 4 * clips[trainer_module.window_index(n, len(clips), 0)]["object"] for n in (0, 1)])
    torch.testing.assert_close(batch.weights[:, 0], expected)
    plain = options(workspace, "base", "plain.safetensors", steps=1, cache_dir=str(tmp_path / "cache"))
    train(plain, log=QUIET)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2 * len(files) + 1  # its own cache files, no shares
    assert "object" not in torch.load(next(p for p in (tmp_path / "cache").glob("*.pt") if p not in files
                                           and p.name != "null.pt"), weights_only=True)
    with pytest.raises(TrainingSetupError, match="used other settings"):
        train(dataclasses.replace(chosen, steps=2, object_weight=2.0), log=QUIET)


def test_step_lines_go_to_the_stderr_of_the_run(workspace, capsys):
    """The progress lines follow a stderr redirected after import (a notebook's, a log file's)."""
    train(options(workspace, "animation", "progress.safetensors", steps=1), log=QUIET)
    assert "step 1/1  loss " in capsys.readouterr().err


def test_sr_trains_on_latent_crops(workspace):
    """One step of the sr task on 4x4-latent crops of the 64x64 clips (noise, BGN and target all at the crop's size)."""
    out = train(options(workspace, "sr", "crops.safetensors", steps=1, latent_crop=4), log=QUIET)
    assert load_checkpoint(out).config.bgn_t_n == 700


def test_averaging_switched_on_at_resume_starts_from_the_resumed_weights(workspace):
    plain = train(options(workspace, "animation", "two_steps.safetensors", steps=2), log=QUIET)
    later = options(workspace, "animation", "two_steps.safetensors", steps=3, ema_decay=1 - 1e-9)
    Path(later.out).rename(Path(later.out).with_name("plain.safetensors"))
    averaged = train(later, log=QUIET)
    at_two, after, init = (load_file(str(Path(plain).with_name("plain.safetensors"))), load_file(str(averaged)),
                           load_file(str(workspace / "base.safetensors")))
    moved = [key for key in at_two if key in init and not torch.equal(at_two[key], init[key].to(at_two[key].dtype))]
    assert moved, "two steps of training changed no weight"
    for key in at_two:
        torch.testing.assert_close(after[key], at_two[key], rtol=0, atol=1e-6, msg=key)


def _distributed_args(workspace: Path) -> list[str]:
    return ["--task", "sr", "--init", str(workspace / "base.safetensors"), "--data", str(workspace / "data"),
            "--frames", "4", "--height", "64", "--width", "64", "--max-frames", "12", "--steps", "2",
            "--lr", "1e-3", "--no-gradient-checkpointing", "--save-dtype", "fp32", "--precision", "fp32",
            "--cache-dir", str(workspace / "cache_ddp"), "--log-every", "1", "--dropout", "0"]


DISTRIBUTED_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _train_in_one_process(workspace: Path, batch_size: int, name: str) -> Path:
    out = workspace / name
    run = subprocess.run([sys.executable, "-m", "univg_core.cli.train", *_distributed_args(workspace), "--batch-size",
                          str(batch_size), "--out", str(out)], cwd=ROOT, env=DISTRIBUTED_ENV, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == str(out)
    return out


@pytest.fixture(scope="module")
def one_rank_weights(workspace) -> Path:
    return _train_in_one_process(workspace, 2, "single.safetensors")


@pytest.fixture(scope="module")
def unaveraged_weights(workspace) -> Path:
    """What a rank that trained on its own gradient instead of the average would hold."""
    return _train_in_one_process(workspace, 1, "batch_one.safetensors")


def _disagreeing_fraction(a: dict, b: dict) -> tuple[float, str]:
    """The share of weights that differ beyond float noise, and the worst one.
    Adam's first steps are about lr * sign(gradient), so a gradient element that summation
    order alone pushes across zero moves its weight by ~lr: a few such elements are noise,
    a rank that trains on its own gradient instead of the average disagrees on most."""
    differing = total = 0
    worst = (0.0, "")
    for key in a:
        gap = (a[key].float() - b[key].float()).abs()
        differing += int((gap > 5e-6 + 5e-5 * a[key].float().abs()).sum())
        total += gap.numel()
        worst = max(worst, (float(gap.max()), key))
    return differing / total, f"largest gap {worst[0]:.2e} in {worst[1]}"


@pytest.mark.parametrize("wrapper", ["ddp", "fsdp"])
def test_two_processes_match_one_with_the_same_global_batch(workspace, one_rank_weights, unaveraged_weights, wrapper):
    """torchrun, gloo: 2 ranks x batch 1 == 1 rank x batch 2, weights equal after 2 steps, with
    DistributedDataParallel and with FSDP2 sharding (network dropout off: its masks are drawn per rank)."""
    double = workspace / f"two_ranks_{wrapper}.safetensors"
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "univg_core.cli.train", *_distributed_args(workspace), "--batch-size", "1", "--out", str(double),
         *(["--fsdp"] if wrapper == "fsdp" else [])],
        cwd=ROOT, env=DISTRIBUTED_ENV, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count(str(double)) == 1  # the output path is printed by rank 0 only
    a, b = load_file(str(one_rank_weights)), load_file(str(double))
    assert a.keys() == b.keys()
    # batch 2 in one process and batch 1 per rank sum in different orders: here no weight
    # differs beyond 5e-6, but CI once had some in one tensor (float noise through Adam's sign)
    fraction, worst = _disagreeing_fraction(a, b)
    assert fraction <= 1e-4, f"{fraction:.2%} of the weights differ; {worst}"
    assert _disagreeing_fraction(a, load_file(str(unaveraged_weights)))[0] > 0.5  # the measure can tell
    initial = load_file(str(workspace / "base.safetensors"))
    assert not torch.equal(initial["model.diffusion_model.out.2.weight"].float(), a["model.diffusion_model.out.2.weight"])


def test_cli_reports_bad_input_with_exit_2(workspace, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "univg_core.cli.train", "--task", "animation", "--init", str(workspace / "base.safetensors"),
         "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o.safetensors")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 2 and "error: data folder" in run.stderr and "does not exist" in run.stderr


def test_saved_files_load_with_their_task_settings(workspace):
    for task, family, prediction, window, channels in (
        ("animation", "univg_animation", "eps", (600, 990), 8),
        ("interpolation", "univg_interpolation", "eps", (600, 990), 8),
        ("sr", "univg_sr", "v", (0, 700), 4),
        ("base", "univg_base", "eps", (None, None), 4),
    ):
        out = train(options(workspace, task, f"{task}_1.safetensors", steps=1), log=QUIET)
        loaded = load_checkpoint(out)
        assert (loaded.family, loaded.prediction, loaded.config.unet.in_channels) == (family, prediction, channels)
        assert (loaded.config.bgn_t_m, loaded.config.bgn_t_n) == window
        assert loaded.metadata["univg.task"] == task and loaded.vae_state_dict and loaded.text_encoder_state_dict
    # the ablation's no-BGN models: the task's channels and prediction, no window
    out = train(options(workspace, "animation", "animation_no_bgn.safetensors", steps=1, bgn=False), log=QUIET)
    loaded = load_checkpoint(out)
    assert (loaded.family, loaded.config.unet.in_channels, loaded.config.bgn_t_m, loaded.config.bgn_t_n) == (
        "univg_animation", 8, None, None)
    # a text-only init trains text-only, and its output has no image branch
    out = train(options(workspace, "animation", "from_t2v.safetensors", init=str(workspace / "t2v.safetensors"), steps=1),
                log=QUIET)
    assert load_checkpoint(out).image_proj is None


def test_sr_clean_share_caches_halved_copies_for_that_share_of_clips_and_leaves_default_caches_as_they_were(workspace, tmp_path):
    """--clean-share 1: every clip's low-resolution copy is the 2x area downsample brought back up
    (no blur, JPEG or noise); the default (0) keeps its cache names, so caches made before stay valid."""
    from univg_core.training.cache import CacheSpec, _encode_latents, _key_fields, encoders_from_checkpoint
    from univg_core.training.degrade import halved

    assert "clean_share" not in _key_fields(CacheSpec(64, 64, 4, lowres=True))
    assert _key_fields(CacheSpec(64, 64, 4, lowres=True, clean_share=0.2))["clean_share"] == 0.2
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 1.0 - 0.5  # a pattern of period 2
    assert halved(checker.expand(1, 3, 16, 16)).abs().max() < 1e-6  # a 2x area downsample removes it whole
    ramp = torch.linspace(-1, 1, 16).expand(1, 3, 16, 16)
    assert (halved(ramp) - ramp).abs().mean() < 0.05  # what varies slowly stays

    cache = tmp_path / "cache"
    train(options(workspace, "sr", "clean.safetensors", steps=1, latent_crop=4, clean_share=1.0, cache_dir=str(cache)),
          log=QUIET)
    entry = torch.load(next(p for p in sorted(cache.glob("*.pt")) if p.name != "null.pt"), weights_only=True)
    encoders = encoders_from_checkpoint(load_checkpoint(workspace / "base.safetensors"), need_vision=False)
    video, _ = read_video(Path(entry["source"]), 64, 64, 12, 1)
    torch.testing.assert_close(entry["lowres"].float(), _encode_latents(encoders.vae, halved(video)).float(),
                               atol=2e-3, rtol=0)
    with pytest.raises(TrainingSetupError, match="clean-share must be in"):
        train(options(workspace, "sr", "bad.safetensors", steps=1, clean_share=1.5), log=QUIET)


def test_loop_share_plays_interpolation_clips_there_and_back():
    """--loop-share 1: every interpolation clip shows frame min(i, T-1-i), so its last keyframe in the
    sparse concat is its first (a loop); 0: the clip as it is."""
    from types import SimpleNamespace

    from univg_core.training import trainer as trainer_module
    from univg_core.training.objective import there_and_back

    assert there_and_back(torch.arange(6).reshape(1, 1, 6)).flatten().tolist() == [0, 1, 2, 2, 1, 0]
    generator = torch.Generator().manual_seed(0)
    item = {"latents": torch.randn(4, 5, 2, 2, generator=generator), "text": torch.zeros(3, 8)}
    clips = type("Clips", (), {"__len__": lambda self: 1, "__getitem__": lambda self, index: item,
                               "null": {"text": torch.zeros(3, 8)}})()
    spec = TASKS["interpolation"]
    concats = {}
    for share in (0.0, 1.0):
        chosen = SimpleNamespace(seed=0, latent_crop=0, object_weight=0.0, offset_noise=0.0, loop_share=share, t_max=None)
        batch = trainer_module.make_batch([0, 1], clips, spec, (567, 875), make_alphas_cumprod(), chosen, False, 0.0, 0.0)
        concats[share] = batch.x[:, 4:]
    assert torch.equal(concats[1.0][:, :, 0], concats[1.0][:, :, -1])
    assert torch.equal(concats[0.0][:, :, -1], item["latents"][:, -1].expand(2, -1, -1, -1))
    assert torch.equal(concats[1.0][:, :, 0], concats[0.0][:, :, 0])


def test_the_null_encodings_are_kept_for_the_same_encoders_and_made_again_for_others(workspace, tmp_path):
    """null.pt (the empty prompt's and the grey image's encodings) is written once per cache folder
    for the encoders and frame size that made it; a file whose key names other encoders is redone."""
    cache = tmp_path / "cache"
    train(options(workspace, "base", "first.safetensors", steps=1, cache_dir=str(cache)), log=QUIET)
    null = cache / "null.pt"
    made = torch.load(null, weights_only=True)
    inode = null.stat().st_ino
    train(options(workspace, "base", "second.safetensors", steps=1, cache_dir=str(cache)), log=QUIET)
    assert null.stat().st_ino == inode  # kept, not written again
    torch.save({**made, "key": "other encoders"}, null)
    train(options(workspace, "base", "third.safetensors", steps=1, cache_dir=str(cache)), log=QUIET)
    again = torch.load(null, weights_only=True)
    assert again["key"] == made["key"] and torch.equal(again["text"], made["text"])
