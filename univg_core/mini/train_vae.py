"""Train UniVG Mini's VAE on frames of the procedural world (rendered on the fly, seeded), and
measure it: reconstruction PSNR on held-out frames of other seeds."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..training.object_weight import object_pixels
from ..models.tiny_vae import DOWNSAMPLE, ShuffleTinyVAE, TinyVAE
from .world import make_specs, render

HELDOUT_SEED = 100_000


@dataclass
class VAETrainOptions:
    steps: int = 2000
    batch_size: int = 8
    crop: int = 32
    lr: float = 5e-4
    clip_grad: float = 1.0
    seed: int = 0
    frame_size: int = 64
    pool_clips: int = 600  # clips rendered once and sampled from
    log_every: int = 100
    decoder_only: bool = False  # fine-tune the decoder of `start`: its latents (what the UNets learn) stay
    # decoder_only: each latent gets Gaussian noise of a std drawn from [0, latent_noise] (raw latent units), so
    # the decoder reads a diffusion model's slightly-off latents as the frame they are close to
    latent_noise: float = 0.0
    # pixels of an object (further than object_weight.OBJECT_DISTANCE from the crop's median colour) weigh 1 + object_weight in
    # the loss: with 0 (the shipped VAE) a small object's colour counts for its few pixels, and the encoder kept a
    # blue object on the gray background 0.03 (scaled units) from the empty background
    object_weight: float = 0.0
    # super-resolution's VAE: textured 128x128 frames (crops aligned to the latent grid, so a pattern's
    # phase is the frame's), a decoder whose last doubling is a pixel shuffle, and this share of each
    # batch from the 64x64 frames upsampled bicubically (what F_SR's input is encoded from)
    textured: bool = False
    shuffle: bool = False
    upsampled_share: float = 0.0
    # the error of what a 2x area downsample removes (each pixel less its 2x2 block's mean) counts
    # this much more: the world's detail at 128 is such a pattern, of a few levels beside an edge's
    detail_weight: float = 0.0


def render_pool(count: int, seed: int, size: int, frames: int = 8, textured: bool = False) -> torch.Tensor:
    """Every frame of `count` world clips as [N, 3, size, size] floats in [0, 1]."""
    clips = [render(spec, size, textured) for spec in make_specs(count, seed, frames)]
    return torch.from_numpy(np.concatenate(clips)).permute(0, 3, 1, 2).float() / 255


def upsampled_pool(count: int, seed: int, size: int, frames: int = 8) -> torch.Tensor:
    """The same clips as super-resolution's input: every other clip rendered at size / 2 and
    upsampled bicubically to size, the others degraded as F_SR's training inputs are (blur,
    down-scale, JPEG, noise; from the untextured render, whose pattern-free pixels leak nothing)."""
    from ..training.degrade import degrade

    generator = torch.Generator().manual_seed(seed)
    clips = []
    for index, spec in enumerate(make_specs(count, seed, frames)):
        if index % 2:
            plain = torch.from_numpy(render(spec, size)).permute(0, 3, 1, 2).float() / 255
            clips.append((degrade(plain * 2 - 1, generator) + 1) / 2)
        else:
            low = torch.from_numpy(render(spec, size // 2)).permute(0, 3, 1, 2).float() / 255
            clips.append(torch.nn.functional.interpolate(low, scale_factor=2, mode="bicubic").clamp(0, 1))
    return torch.cat(clips)


def _batch(pool: torch.Tensor, options: VAETrainOptions, generator: torch.Generator,
           upsampled: Optional[torch.Tensor] = None) -> torch.Tensor:
    index = torch.randint(len(pool), (options.batch_size,), generator=generator)
    top, left = torch.randint(pool.shape[-1] - options.crop + 1, (2, options.batch_size), generator=generator)
    if options.textured:
        top, left = top // DOWNSAMPLE * DOWNSAMPLE, left // DOWNSAMPLE * DOWNSAMPLE
    sources = [pool] * options.batch_size
    if upsampled is not None:
        picks = torch.rand(options.batch_size, generator=generator) < options.upsampled_share
        sources = [upsampled if pick else pool for pick in picks]
    crops = [source[i, :, y : y + options.crop, x : x + options.crop] for source, i, y, x in zip(sources, index, top, left)]
    return torch.stack(crops)


def block_detail(pixels: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] (H, W even) -> each pixel less the mean of its aligned 2x2 block."""
    blocks = torch.nn.functional.avg_pool2d(pixels, 2)
    return pixels - torch.nn.functional.interpolate(blocks, scale_factor=2, mode="nearest")


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, object_weight: float = 0.0,
                        detail_weight: float = 0.0) -> torch.Tensor:
    """L1 + L2 per pixel, averaged; with object_weight, a weighted average in which the pixels that differ
    from their crop's median colour (its background, in this world) weigh 1 + object_weight; with
    detail_weight, the L1 + L2 error of the block detail (block_detail) is added at that weight."""
    difference = reconstruction - target
    error = difference.abs() + difference ** 2
    if detail_weight:
        detail = block_detail(difference)
        error = error + detail_weight * (detail.abs() + detail ** 2)
    if not object_weight:
        return error.mean()
    weights = 1 + object_weight * object_pixels(target)
    return (weights * error).mean() / weights.mean()


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (inf when they are equal)."""
    mse = float(((reconstruction.clamp(0, 1) - target) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@torch.no_grad()
def heldout_psnr(vae: TinyVAE, clips: int = 40, size: int = 64) -> float:
    frames = render_pool(clips, HELDOUT_SEED, size)
    reconstruction = torch.cat([vae(frames[i : i + 32]) for i in range(0, len(frames), 32)])
    return psnr(reconstruction, frames)


def train_vae(options: VAETrainOptions, log: Optional[Callable[[str], None]] = print,
              start: Optional[TinyVAE] = None) -> TinyVAE:
    """Train a fresh VAE, or go on from `start` (with decoder_only, its encoder is frozen)."""
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed + (1 if start is not None else 0))
    vae = start.train().requires_grad_(True) if start is not None else (ShuffleTinyVAE() if options.shuffle else TinyVAE())
    if options.decoder_only:
        vae.taesd_encoder.requires_grad_(False)
    pool = render_pool(options.pool_clips, options.seed, options.frame_size, textured=options.textured)
    upsampled = None
    if options.upsampled_share:
        upsampled = upsampled_pool(options.pool_clips, options.seed, options.frame_size)
    optimiser = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=options.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, options.lr, total_steps=options.steps, pct_start=0.05)
    start = time.time()
    for step in range(1, options.steps + 1):
        batch = _batch(pool, options, generator, upsampled)
        if options.decoder_only:
            with torch.no_grad():
                latents = vae.encode(batch)
                if options.latent_noise:
                    strength = torch.rand(len(latents), 1, 1, 1, generator=generator) * options.latent_noise
                    latents = latents + strength * torch.randn(latents.shape, generator=generator)
            reconstruction = vae.decode(latents)
        else:
            reconstruction = vae(batch)
        loss = reconstruction_loss(reconstruction, batch, options.object_weight, options.detail_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), options.clip_grad)  # one bad batch must not kill the ReLUs
        optimiser.step()
        schedule.step()
        if log and (step % options.log_every == 0 or step == options.steps):
            log(f"vae step {step}/{options.steps}: loss {loss.item():.4f}, batch PSNR "
                f"{psnr(reconstruction.detach(), batch):.1f} dB, {time.time() - start:.0f} s")
    return vae.eval()


@torch.no_grad()
def sr_round_trip_scores(vae: TinyVAE, clips: int = 24, frames: int = 4) -> dict:
    """Super-resolution's VAE gate on held-out clips: the textured 128x128 truth through the VAE,
    and bicubic upsampling of the 64x64 clip, each scored by sr_quality (averaged over clips)."""
    from .sr_eval import bicubic
    from .sr_quality import mean_scores, sr_scores

    rows = {"round_trip": [], "bicubic": []}
    for spec in make_specs(clips, HELDOUT_SEED + 1, frames):
        truth = render(spec, 128, textured=True)
        low = render(spec, 64)
        pixels = torch.from_numpy(truth).permute(0, 3, 1, 2).float() / 255
        round_trip = vae(pixels).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        rows["round_trip"].append(sr_scores(round_trip, spec, truth, low))
        rows["bicubic"].append(sr_scores(bicubic(low), spec, truth, low))
    return mean_scores(rows)

