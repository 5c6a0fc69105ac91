"""The stages of UniVG Mini's recipe, each a function of the parsed command line of
univg_core.cli.train_mini (whose RECIPE table lists them in order with their settings): the
world's training sets, the VAEs, the fixed random towers, then every UNet through the pack's own
training loop. Each keeps what an earlier run finished and checks that it was made by this recipe."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch

from ..mini import models, towers
from ..mini.dataset import TRUTH, set_mismatch, write_dataset
from ..models.tiny_vae import load_tiny_vae
from ..mini.train_vae import VAETrainOptions, heldout_psnr, render_pool, train_vae
from ..training.trainer import TrainOptions, train

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = models.WEIGHTS_DIR
VAE_FILE = models.VAE_FILE
JOINT_VAE_FILE = "vae_joint.safetensors"  # the encoder every training run encodes with
DECODER_VAE_FILE = "vae_decoder.safetensors"
SR_JOINT_VAE_FILE = "sr_vae_joint.safetensors"
IMAGE_SET = "world64_image"  # the first clips of world64, for the stage that reads CLIP-vision tokens
SR_SET = "world128_textured"  # F_SR's clips: twice the size, with the world's pixel patterns
SR_INIT_FILE = "sr_init.safetensors"  # F_B with the SR VAE's scale factor and companion


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StaleWorkError(ValueError):
    """A file or folder kept from an earlier run was made by another recipe than this run asks."""


def _check_world_set(folder: Path, count: int | None = None) -> None:
    problem = set_mismatch(folder, models.FRAMES, count)
    if problem:
        raise StaleWorkError(f"{problem}, as this run asks; delete the folder and the world stage writes it again "
                            f"(and delete {folder.parent / 'cache' / folder.name}, its encoded copy)")


def stage_world(args) -> None:
    sets = (("world64", 0, models.SIZE, args.clips, False), (SR_SET, 1, 2 * models.SIZE, args.clips, True),
            (IMAGE_SET, 0, models.SIZE, args.image_clips, False))
    for name, seed, size, count, textured in sets:
        folder = args.work / name
        if (folder / TRUTH).is_file():
            _check_world_set(folder, count)
        else:
            write_dataset(folder, count, seed, models.FRAMES, size, models.FPS, log=_log, textured=textured)


OBJECT_WEIGHT_KEY = "univg.vae_object_weight"  # absent in files made before the option: 0


def _vae_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.metadata() or {}


def _check_vae_file(path: Path, object_weight: float) -> None:
    made_with = float(_vae_metadata(path).get(OBJECT_WEIGHT_KEY, 0.0))
    if made_with != object_weight:
        raise StaleWorkError(f"{path} was trained with --vae-object-weight {made_with:g}, this run asks "
                             f"{object_weight:g}; delete it (and the VAE files after it) or give another --work / --weights")


def _save_vae(vae, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous() for key, value in vae.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def _object_weight_metadata(object_weight: float) -> dict:
    return {OBJECT_WEIGHT_KEY: f"{object_weight:g}"} if object_weight else {}  # the shipped file stays as it was


def stage_vae(args) -> None:
    """Encoder and decoder together, then the decoder alone on whole frames, then on noisy
    latents: the latents the UNets learn come from the first part's encoder, which the others
    leave as it is."""
    joint = args.work / JOINT_VAE_FILE
    if not joint.is_file():
        vae = train_vae(VAETrainOptions(steps=args.vae_steps, seed=args.seed, object_weight=args.vae_object_weight), log=_log)
        with torch.no_grad():
            scale = models.latent_scale_factor(vae.encode(render_pool(64, args.seed, models.SIZE)))
        _log(f"VAE (encoder and decoder): held-out PSNR {heldout_psnr(vae):.2f} dB, latent scale factor {scale}")
        _save_vae(vae, joint, {"univg.scale_factor": str(scale), **_object_weight_metadata(args.vae_object_weight)})
    _check_vae_file(joint, args.vae_object_weight)
    decoder = args.work / DECODER_VAE_FILE
    if not decoder.is_file():
        vae = load_tiny_vae(joint)
        options = VAETrainOptions(steps=args.decoder_steps, seed=args.seed, decoder_only=True, crop=64,
                                  object_weight=args.vae_object_weight)
        vae = train_vae(options, log=_log, start=vae)
        _log(f"VAE decoder on whole frames: held-out PSNR {heldout_psnr(vae):.2f} dB")
        _save_vae(vae, decoder, _object_weight_metadata(args.vae_object_weight))
    _check_vae_file(decoder, args.vae_object_weight)
    path = args.weights / VAE_FILE
    if path.is_file():
        _check_vae_file(path, args.vae_object_weight)
        return
    # the UNets' latents are off by a few tenths of their unit scale: a decoder trained only on exact
    # latents turned an error of 0.1 into scattered blobs, so it learns to read noisy ones
    scale = vae_scale_factor(args.work)
    options = VAETrainOptions(steps=args.noisy_decoder_steps, seed=args.seed, decoder_only=True, crop=64,
                              latent_noise=args.decoder_latent_noise / scale, object_weight=args.vae_object_weight)
    vae = train_vae(options, log=_log, start=load_tiny_vae(decoder))
    psnr = heldout_psnr(vae)
    _log(f"VAE decoder on noisy latents: held-out PSNR {psnr:.2f} dB")
    _save_vae(vae.half(), path, {"univg.scale_factor": str(scale), "univg.heldout_psnr": f"{psnr:.2f}",
                                 **_object_weight_metadata(args.vae_object_weight)})


def stage_sr_vae(args) -> None:
    """F_SR's VAE, grown from the shipped Mini VAE (ShuffleTinyVAE.starting_from: the same encoder,
    the last doubling of the decoder a pixel shuffle) and trained on textured 128x128 frames, with
    a share of super-resolution's inputs and a detail-weighted loss; with --sr-vae-noisy-steps, then its
    decoder alone on noisy latents, as the Mini VAE's (not the shipped recipe: see the findings)."""
    from ..mini.train_vae import sr_round_trip_scores
    from ..models.tiny_vae import ShuffleTinyVAE

    path = args.weights / models.SR_VAE_FILE
    if path.is_file():
        return
    joint = args.work / SR_JOINT_VAE_FILE
    common = dict(seed=args.seed, crop=64, textured=True, object_weight=4.0, detail_weight=args.sr_vae_detail_weight,
                  frame_size=2 * models.SIZE, pool_clips=160)
    if not joint.is_file():
        start = ShuffleTinyVAE.starting_from(load_tiny_vae(args.weights / VAE_FILE))
        vae = train_vae(VAETrainOptions(steps=args.sr_vae_steps, lr=3e-4, upsampled_share=0.3, **common), log=_log, start=start)
        with torch.no_grad():
            scale = models.latent_scale_factor(vae.encode(render_pool(64, args.seed, 2 * models.SIZE, textured=True)))
        _save_vae(vae, joint, {"univg.scale_factor": str(scale)})
    scale = float(_vae_metadata(joint)["univg.scale_factor"])
    vae = load_tiny_vae(joint)
    if args.sr_vae_noisy_steps:
        options = VAETrainOptions(steps=args.sr_vae_noisy_steps, lr=1e-4, decoder_only=True,
                                  latent_noise=args.decoder_latent_noise / scale, **common)
        vae = train_vae(options, log=_log, start=vae)
    scores = sr_round_trip_scores(vae, clips=16)
    _log(f"SR VAE gate (held-out clips): {scores}")
    gate = scores["round_trip"]
    _save_vae(vae.half(), path, {"univg.scale_factor": str(scale), "univg.edge_psnr": f"{gate['edge_psnr']:.2f}",
                                 "univg.energy_above_nyquist_share": f"{gate['energy_above_nyquist_share']:.3f}"})


def vae_scale_factor(work: Path) -> float:
    return float(_vae_metadata(work / JOINT_VAE_FILE)["univg.scale_factor"])


def stage_towers(args) -> None:
    towers.write_towers(args.work / "towers", args.work / "towers")


def _train(args, task: str, init: Path, data: str, out: Path, steps: int, size: int, publish: bool = True,
           text_only: bool = False, **changes) -> None:
    """One run of the training CLI's loop; it writes (and resumes) in --work, and the finished
    file is copied to `out` (`publish`; an earlier phase of the same run leaves it to the last),
    without its silenced image branch when the run never read image tokens (`text_only`)."""
    if out.is_file():
        return
    if (args.work / data / TRUTH).is_file():
        _check_world_set(args.work / data)
    run_out = args.work / "runs" / out.name
    values = dict(
        task=task, init=str(init), data=str(args.work / data), out=str(run_out),
        vae=str(args.work / JOINT_VAE_FILE), text_encoder=str(args.work / "towers" / towers.TEXT_FILE),
        image_encoder=str(args.work / "towers" / towers.VISION_FILE),
        frames=models.FRAMES, height=size, width=size, batch_size=args.batch_size, steps=steps, lr=args.lr,
        weight_decay=0.0, gradient_checkpointing=False, dropout=0.0, save_every=100, seed=args.seed,
        cache_dir=str(args.work / "cache" / data), log_every=20,
    )
    options = TrainOptions(**{**values, **changes})
    start = time.monotonic()
    train(options, log=_log)
    _log(f"{out.name}: up to step {steps} in {(time.monotonic() - start) / 60:.1f} min")
    if publish:
        out.parent.mkdir(parents=True, exist_ok=True)
        if text_only:
            models.write_text_only(run_out, out)
        else:
            shutil.copyfile(run_out, out)


def stage_base(args) -> None:
    # --relative-position: the same recipe with position terms in the temporal attention, an
    # experiment whose file goes to WORK/experiments, never among the shipped weights
    variant = "_relpos" if args.relative_position else ""
    init = args.work / f"base_init{variant}.safetensors"
    if not init.is_file():
        models.write_base_init(init, vae_scale_factor(args.work), seed=args.seed, relative_position=args.relative_position)
    # Text only: CLIP-vision tokens of every clip cost seconds each on a CPU. Two phases of one
    # run: the paper's text dropout (0.5, which leaves F_B able to follow an image alone), then,
    # since no image ever comes in this stage, text dropout 0.1 (as F_A's) with an EMA of the
    # weights (the shipped file holds the EMA): after the first phase, samples ignored the caption's
    # colour and drew each frame on its own.
    out = (args.work / "experiments" / "univg_mini_base_relpos.safetensors" if variant
           else args.weights / models.BASE_FILE)
    common = dict(image_tokens=False, prediction="v", lr=args.base_lr)
    _train(args, "base", init, "world64", out, args.base_steps, models.SIZE, publish=False, **common)
    _train(args, "base", init, "world64", out, args.base_steps + args.base_ema_steps, models.SIZE,
           ema_decay=args.base_ema, text_dropout=0.1, **common)


def stage_first_frame(args) -> None:
    """The Mini's text-to-image model, standing in for the SDXL the paper draws first frames with
    (its image-to-video route: text -> image -> F_A): F_B fine-tuned on each clip's first frame
    alone (windows of one frame, one per clip), so it learns where the world starts an object
    for the caption's motion, which F_B, drawing all frames at once, leaves to the noise. The
    text_to_video_two_stage workflow draws its first frame with it. Text only, written without
    the silenced image branch (2.3 MB less)."""
    _train(args, "base", _base_file(args), "world64", args.weights / models.FIRST_FRAME_FILE, args.first_frame_steps,
           models.SIZE, text_only=True, frames=1, window_stride=models.FRAMES, batch_size=args.first_frame_batch_size,
           image_tokens=False, prediction="v", text_dropout=0.1, ema_decay=args.base_ema)


def stage_base_image(args) -> None:
    """F_B that reads a first frame too: F_B fine-tuned with CLIP-vision tokens of each clip's
    first frame through the Resampler and MCA's image branch, the paper's dropouts (text 0.5,
    image 0.1). On a subset of the clips: the full-size vision tower takes seconds a frame on
    a CPU. The image workflows and the w_T / w_I study use it. The object's latent cells weigh
    more in its loss (--base-image-object-weight): with a plain loss it learnt the frame's
    background, 95% of the cells, and left the object's colour to chance."""
    _train(args, "base", _base_file(args), IMAGE_SET, args.weights / models.BASE_IMAGE_FILE,
           args.base_image_steps, models.SIZE, image_tokens=True, prediction="v", text_dropout=0.5,
           image_dropout=0.1, object_weight=args.base_image_object_weight)


def _base_file(args) -> Path:
    path = args.weights / models.BASE_FILE
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: F_A and F_SR fine-tune from F_B; run the base stage first")
    return path


# F_A: text and the first frame's latent (concatenated), BGN 600/990 by default; F_SR: text only,
# BGN 0/700, at twice the size. Both fine-tune F_B and keep its v-prediction on the zero-terminal-
# SNR schedule (the paper's F_A predicts eps on SD's schedule: from F_B's schedule, eps at t = 990
# would divide the error by sqrt(abar) ~ 0.01). F_A skips the CLIP image tokens on the CPU
# (seconds per clip); the first frame reaches it through the concatenated latent. F_SR is written
# without the silenced image branch; F_A keeps it: the animation workflows give the first frame
# through UniVG Multi-Conditioning, which needs the CLIP_VISION the loader returns only for a
# model with an image branch.
def stage_animation(args, bgn: bool = True) -> None:
    name = "univg_mini_animation" + ("" if bgn else "_no_bgn") + ".safetensors"
    _train(args, "animation", _base_file(args), "world64", args.weights / name, args.animation_steps, models.SIZE,
           image_tokens=False, bgn=bgn, prediction="v")


def stage_sr(args, bgn: bool = True) -> None:
    """F_SR in the latents of its own VAE (the sr_vae stage): F_B's weights with that VAE's scale
    factor, fine-tuned on the textured 128x128 clips; their low-resolution copies are the paper's
    degradations, or (--sr-clean-share) a clean 2x area downsample, which removes the patterns."""
    name = "univg_mini_sr" + ("" if bgn else "_no_bgn") + ".safetensors"
    sr_vae = args.weights / models.SR_VAE_FILE
    if not sr_vae.is_file():
        raise SystemExit(f"error: {sr_vae} is missing: F_SR works in its latents; run the sr_vae stage first")
    init = args.work / SR_INIT_FILE
    if not init.is_file():
        models.write_with_vae(_base_file(args), init, models.SR_VAE_FILE, float(_vae_metadata(sr_vae)["univg.scale_factor"]))
    # on 64x64 crops of the 128x128 clips (8x8 latents, as F_B learnt): a whole clip costs ~5x the time
    _train(args, "sr", init, SR_SET, args.weights / name, args.sr_steps, 2 * models.SIZE,
           text_only=True, zero_terminal_snr=True, bgn=bgn, latent_crop=models.SIZE // 8, vae=str(sr_vae),
           clean_share=args.sr_clean_share)


def stage_interpolation(args, bgn: bool = True) -> None:
    """F_I, the paper's future work: F_A fine-tuned on each clip's first and last frames
    (concatenated, zeros between), BGN from their per-frame blend. The no-BGN twin is written
    without the image branch (it only serves the ablation)."""
    animation = args.weights / models.ANIMATION_FILE
    if not animation.is_file():
        raise SystemExit(f"error: {animation} is missing: F_I fine-tunes F_A; run the animation stage first")
    out = args.weights / (models.INTERPOLATION_FILE if bgn else models.INTERPOLATION_NO_BGN_FILE)
    window = dict(t_m=args.interpolation_t_m, t_n=args.interpolation_t_n) if bgn else {}
    _train(args, "interpolation", animation, "world64", out, args.interpolation_steps, models.SIZE,
           text_only=not bgn, image_tokens=False, bgn=bgn, prediction="v", loop_share=args.interpolation_loop_share,
           object_weight=args.interpolation_object_weight, **window)


def stage_animation_no_bgn(args) -> None:
    stage_animation(args, bgn=False)


def stage_sr_no_bgn(args) -> None:
    stage_sr(args, bgn=False)


def stage_interpolation_no_bgn(args) -> None:
    stage_interpolation(args, bgn=False)
