"""Put UniVG Mini into a ComfyUI models folder: the shipped UNets into models/univg, its VAE
into models/vae, and its fixed random text and vision towers (rebuilt from their seed into the
repository's .cache/mini/towers, about 2 GB, never downloaded, and hard-linked from there, or
copied where models/ is on another file system) into models/text_encoders and models/clip_vision.

    python -m univg_core.cli.install_mini --models /path/to/ComfyUI/models

A file already in place with the same content is kept. Exit status 2 when a shipped file is
missing or damaged (the message says how to restore it)."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

from safetensors import SafetensorError

from ..checkpoints import CheckpointError, load_checkpoint
from ..files import existing_parent, write_atomically
from ..mini import models, towers

WEIGHTS = models.WEIGHTS_DIR
RESTORE = ("restore it with `git checkout -- univg_core/mini/weights` or rebuild it with "
           "`python -m univg_core.cli.train_mini` (see the README)")


class MiniInstallError(RuntimeError):
    pass


def shipped_unets(weights: Path = WEIGHTS) -> list[Path]:
    return sorted(path for path in weights.glob("univg_mini_*.safetensors") if path.name not in models.VAE_FILES)


def check_shipped(weights: Path = WEIGHTS) -> list[Path]:
    """Every shipped file, each opened as what it must be; a damaged one is named."""
    from safetensors.torch import load_file

    vaes = [weights / name for name in models.VAE_FILES if (weights / name).is_file()]
    unets = shipped_unets(weights)
    if not (weights / models.VAE_FILE).is_file() or not unets:
        raise MiniInstallError(f"UniVG Mini's weights are missing from {weights}; {RESTORE}")
    for path in unets:
        try:
            load_checkpoint(path, device="meta")
        except CheckpointError as error:
            raise MiniInstallError(f"{path.name} is damaged ({error}); {RESTORE}") from None
    for vae in vaes:
        try:
            load_file(str(vae))
        except Exception as error:
            raise MiniInstallError(f"{vae.name} is damaged ({error}); {RESTORE}") from None
    return [*vaes, *unets]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_if_changed(source: Path, target: Path) -> None:
    if target.is_file() and target.stat().st_size == source.stat().st_size and _digest(target) == _digest(source):
        return
    write_atomically(target, lambda partial: shutil.copyfile(source, partial))


def install(models_dir: str | Path, weights: Path = WEIGHTS, log=print) -> list[Path]:
    """Install into `models_dir` (ComfyUI's models folder); returns the installed UNet files."""
    models_dir = Path(models_dir)
    files = check_shipped(weights)
    installed = []
    for source in files:
        folder = "vae" if source.name in models.VAE_FILES else "univg"
        _copy_if_changed(source, models_dir / folder / source.name)
        if folder == "univg":
            installed.append(models_dir / folder / source.name)
    log("UniVG Mini: building its text and vision towers from their seed (about 2 GB; kept when already there) ...")
    try:
        towers.write_towers(models_dir / "text_encoders", models_dir / "clip_vision")
    except (OSError, SafetensorError) as error:
        raise MiniInstallError(
            f"could not put UniVG Mini's text and vision towers into {models_dir} (about 2 GB, built once in "
            f"{towers.DEFAULT_CACHE} and linked, or copied across file systems): {error}; "
            f"free disk: {_free_gb(towers.DEFAULT_CACHE)} GB at the cache, {_free_gb(models_dir)} GB at {models_dir}"
        ) from None
    return installed


def _free_gb(path: Path) -> str:
    return f"{shutil.disk_usage(existing_parent(path)).free / 1e9:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.install_mini", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, type=Path, help="ComfyUI's models folder")
    args = parser.parse_args(argv)
    try:
        for path in install(args.models, weights=WEIGHTS):
            print(path)
    except MiniInstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
