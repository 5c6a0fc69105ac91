"""Installing UniVG Mini into a ComfyUI models folder, and what a missing or damaged shipped
file tells the user. The towers' own build is tested in test_mini_towers / test_host_mini."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from univg_core.checkpoints import load_checkpoint, save_checkpoint
from univg_core.cli import install_mini
from univg_core.mini import models, towers
from univg_core.models.tiny_vae import TinyVAE

from conftest import tiny_models


@pytest.fixture
def shipped(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    config, unet, image_proj = tiny_models("univg_base")
    save_checkpoint(weights / models.BASE_FILE, config, unet, image_proj, metadata=models.companions_metadata())
    save_file({k: v.contiguous() for k, v in TinyVAE().state_dict().items()}, str(weights / models.VAE_FILE))
    return weights


@pytest.fixture
def tower_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(towers, "write_towers", lambda text, vision: calls.append((text, vision)))
    return calls


def test_install_copies_the_shipped_files_into_comfyuis_folders(shipped, tmp_path, tower_calls):
    models_dir = tmp_path / "models"
    installed = install_mini.install(models_dir, weights=shipped, log=lambda message: None)
    assert installed == [models_dir / "univg" / models.BASE_FILE]
    assert (models_dir / "vae" / models.VAE_FILE).read_bytes() == (shipped / models.VAE_FILE).read_bytes()
    assert tower_calls == [(models_dir / "text_encoders", models_dir / "clip_vision")]
    before = installed[0].stat().st_mtime_ns
    install_mini.install(models_dir, weights=shipped, log=lambda message: None)
    assert installed[0].stat().st_mtime_ns == before  # the same content is kept, not copied again


def test_super_resolutions_own_vae_goes_to_models_vae_and_its_model_names_it(shipped, tmp_path, tower_calls):
    """F_SR's VAE is installed beside the Mini VAE; a model rewritten for it (write_with_vae) keeps
    every weight and names that VAE and its latent scale factor."""
    from univg_core.checkpoints import read_state_dict
    from univg_core.models.tiny_vae import ShuffleTinyVAE

    save_file({k: v.contiguous() for k, v in ShuffleTinyVAE().state_dict().items()}, str(shipped / models.SR_VAE_FILE))
    models_dir = tmp_path / "models"
    installed = install_mini.install(models_dir, weights=shipped, log=lambda message: None)
    assert installed == [models_dir / "univg" / models.BASE_FILE]  # a VAE is not a checkpoint
    assert (models_dir / "vae" / models.SR_VAE_FILE).read_bytes() == (shipped / models.SR_VAE_FILE).read_bytes()

    out = tmp_path / "sr_init.safetensors"
    models.write_with_vae(shipped / models.BASE_FILE, out, models.SR_VAE_FILE, 0.5)
    (before, before_meta), (after, after_meta) = read_state_dict(shipped / models.BASE_FILE), read_state_dict(out)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert load_checkpoint(out).config.schedule.scale_factor == 0.5
    assert load_checkpoint(shipped / models.BASE_FILE).config.schedule.scale_factor != 0.5
    assert models.companion_vae(after_meta) == models.SR_VAE_FILE and models.companion_vae(before_meta) == models.VAE_FILE
    assert models.companion_vae({}) == models.VAE_FILE


def test_a_damaged_or_missing_shipped_file_says_how_to_restore_it(shipped, tmp_path, tower_calls):
    base = shipped / models.BASE_FILE
    base.write_bytes(base.read_bytes()[: base.stat().st_size // 2])
    with pytest.raises(install_mini.MiniInstallError, match="univg_mini_base.safetensors is damaged .*git checkout"):
        install_mini.install(tmp_path / "models", weights=shipped)
    (shipped / models.VAE_FILE).unlink()
    with pytest.raises(install_mini.MiniInstallError, match="missing .*train_mini"):
        install_mini.install(tmp_path / "models", weights=shipped)
    assert not tower_calls and not (tmp_path / "models").exists()



def test_the_cli_reports_a_missing_file_with_exit_2(tmp_path, monkeypatch, capsys, tower_calls):
    monkeypatch.setattr(install_mini, "WEIGHTS", tmp_path / "nothing")
    assert install_mini.main(["--models", str(tmp_path / "models")]) == 2
    assert "error: UniVG Mini's weights are missing" in capsys.readouterr().err


def test_a_full_disk_while_writing_the_towers_is_a_clear_error_with_exit_2(shipped, tmp_path, monkeypatch, capsys):
    def full_disk(text, vision):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(towers, "write_towers", full_disk)
    with pytest.raises(install_mini.MiniInstallError, match=r"towers into .*about 2 GB.*No space left.*free disk: [0-9.]+ GB"):
        install_mini.install(tmp_path / "models", weights=shipped, log=lambda message: None)
    monkeypatch.setattr(install_mini, "WEIGHTS", shipped)
    assert install_mini.main(["--models", str(tmp_path / "models")]) == 2
    assert "error: could not put UniVG Mini's text and vision towers" in capsys.readouterr().err


def test_the_shipped_weights_are_every_model_of_the_mini_and_stay_under_75_mb():
    """Issue 36 allows 75 MB for all the Mini's weights (fp16; the text-to-image model, F_SR and its
    twin, and F_I's no-BGN twin are written without the silenced image branch, 2.3 MB each; F_B keeps its own, where the
    image-reading F_B's fine-tune starts from, and F_A its own, for the CLIP_VISION the animation
    workflows' Multi-Conditioning needs from the loader; F_SR's VAE is a file of its own)."""
    names = sorted(path.name for path in install_mini.WEIGHTS.glob("*.safetensors"))
    assert names == sorted(list(models.VAE_FILES) + [f"univg_mini_{name}.safetensors" for name in (
        "base", "base_image", "first_frame", "animation", "animation_no_bgn", "sr", "sr_no_bgn", "interpolation",
        "interpolation_no_bgn")])
    assert sum(path.stat().st_size for path in install_mini.WEIGHTS.glob("*")) < 75_000_000
    with_branch = {name for name in names if name not in models.VAE_FILES
                   and load_checkpoint(install_mini.WEIGHTS / name).config.unet.image_cross_attention}
    assert with_branch == {f"univg_mini_{name}.safetensors" for name in (
        "base", "base_image", "animation", "animation_no_bgn", "interpolation")}
