"""UniVG's three generation paths as plain functions over a denoiser, a VAE-like
encoder/decoder and tensors. Latent videos are [B, C, T, h, w]; pixel videos are
[T, 3, H, W] in [-1, 1]. The ComfyUI nodes call these.

- generate (F_B): text and/or image guidance, from pure (optionally offset) noise.
- animate (F_A): first-frame latent concatenated on the channels, start from the BGN
  condition at t_n; frame 0 of the result is the input frame. animate_keyframes: the same
  through any keyframes (first + last, loop; see keyframes).
- super_resolve (F_SR): upsample, encode, start at t_n = 700 from the low-resolution
  latent, 7 DPM-Solver++ steps, in overlapping frame/space tiles so memory stays bounded.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from . import bgn, keyframes
from .bgn_sampling import bgn_consistent_sample
from .samplers import Callback, Denoiser, make_timesteps, sample
from ..video import check_pixel_video, in_chunks, upsample_frames
from .schedule import offset_noise

Codec = Callable[[torch.Tensor], torch.Tensor]
BGN_SAMPLING = ("plain", "consistent")  # the samplers as published, or following BGN's marginals (bgn_sampling)


def super_resolution_sampling(choice: str, trained_with_bgn: bool) -> str:
    """The Upscaler's "auto": the BGN-consistent solver for a model trained with BGN (a UniVG F_SR
    file names its window), the plain one otherwise; "plain" and "consistent" as given."""
    if choice == "auto":
        return "consistent" if trained_with_bgn else "plain"
    if choice not in BGN_SAMPLING:
        raise ValueError(f"bgn_sampling must be auto or one of {BGN_SAMPLING}, got {choice!r}")
    return choice


def _check_steps(steps: int, limit: int = 1000) -> None:
    if not isinstance(steps, int) or not 1 <= steps <= limit:
        raise ValueError(f"steps must be an integer in [1, {limit}], got {steps!r}")


def _sample_from_bgn_start(bgn_sampling: str, sampler: str, denoise: Denoiser, x: torch.Tensor,
                           alphas_cumprod: torch.Tensor, timesteps, prediction: str, condition: torch.Tensor, t_m: int,
                           t_n: int, **plain) -> torch.Tensor:
    """Sampling from a BGN start at t_n: the plain samplers (`plain`: their keywords), or the ones
    whose states follow the BGN marginals of the window (t_m, t_n) towards `condition`."""
    if bgn_sampling not in BGN_SAMPLING:
        raise ValueError(f"bgn_sampling must be one of {BGN_SAMPLING}, got {bgn_sampling!r}")
    if bgn_sampling == "plain":
        return sample(sampler, denoise, x, alphas_cumprod, timesteps, prediction, **plain)
    if plain.get("scale_arr") is not None:
        raise ValueError("BGN-consistent sampling is for models trained with Biased Gaussian Noise (UniVG F_A, F_SR, "
                         "F_I); this model scales its clean-sample estimate per step (DynamiCrafter): sample it plainly")
    if plain.get("eta", 0.0):
        raise ValueError("BGN-consistent sampling is deterministic: set DDIM's eta to 0")
    return bgn_consistent_sample(sampler, denoise, x, alphas_cumprod, timesteps, prediction, condition, t_m, t_n,
                                 callback=plain.get("callback"), after_step=plain.get("after_step"))


def _check_latent_shape(shape: Sequence[int]) -> None:
    if len(shape) != 5:
        raise ValueError(f"latent shape must be [B, C, T, h, w], got {list(shape)}")
    batch, channels, frames, height, width = shape
    if min(batch, channels, frames, height, width) < 1:
        raise ValueError(f"latent shape must be positive, got {list(shape)}")


def generate(
    denoise: Denoiser,
    shape: Sequence[int],
    alphas_cumprod: torch.Tensor,
    prediction: str,
    steps: int = 50,
    sampler: str = "dpmpp_2m",
    spacing: str = "uniform",
    generator: Optional[torch.Generator] = None,
    device=None,
    offset_noise_strength: float = 0.0,
    eta: float = 0.0,
    scale_arr: Optional[torch.Tensor] = None,
    callback: Optional[Callback] = None,
    initial_noise: Optional[torch.Tensor] = None,
    final_step: str = "original",
) -> torch.Tensor:
    """F_B: sample a latent video of `shape` (24 frames is UniVG's default) from noise
    (`initial_noise` when given, e.g. drawn on the CPU for device-independent seeds).
    `final_step` is DDIM's (see samplers)."""
    _check_latent_shape(shape)
    _check_steps(steps, len(alphas_cumprod))
    timesteps = make_timesteps(steps, spacing, timesteps=len(alphas_cumprod))
    if initial_noise is not None:
        if tuple(initial_noise.shape) != tuple(shape):
            raise ValueError(f"initial_noise has shape {list(initial_noise.shape)}, expected {list(shape)}")
        x = initial_noise
    else:
        x = offset_noise(tuple(shape), offset_noise_strength, generator=generator, device=device)
    return sample(
        sampler, denoise, x, alphas_cumprod, timesteps, prediction,
        eta=eta, generator=generator, callback=callback, scale_arr=scale_arr, final_step=final_step,
    )


def animate(denoise: Denoiser, first_latent: torch.Tensor, frames: int, alphas_cumprod: torch.Tensor, prediction: str,
            **sampling) -> torch.Tensor:
    """F_A: animate_keyframes through the first frame alone, in the repeat layout. `denoise` takes
    the 2C-channel input [x_t ; first frame repeated] (every guidance branch, the unconditional one
    included, sees the concat). Frame 0 of the result is the input frame's latent exactly, whatever
    the sampler's last step lands on. `sampling`: animate_keyframes' keywords (steps, t_m, t_n,
    sampler, generator, ...; `noise` of the condition's shape [B, C, frames, h, w] replaces the draw
    from `generator`, e.g. one seed per video of a batch)."""
    return animate_keyframes(denoise, keyframes.keyframes_for("first", first_latent, frames), "repeat", alphas_cumprod,
                             prediction, **sampling)


def animate_keyframes(
    denoise: Denoiser,
    given: keyframes.Keyframes,
    layout: str,
    alphas_cumprod: torch.Tensor,
    prediction: str,
    steps: int = 50,
    t_m: int = bgn.ANIMATION_WINDOW[0],
    t_n: int = bgn.ANIMATION_WINDOW[1],
    sampler: str = "dpmpp_2m",
    generator: Optional[torch.Generator] = None,
    eta: float = 0.0,
    scale_arr: Optional[torch.Tensor] = None,
    callback: Optional[Callback] = None,
    final_step: str = "original",
    noise: Optional[torch.Tensor] = None,
    bgn_sampling: str = "plain",
) -> torch.Tensor:
    """A video through the given keyframes: `denoise` reads [x_t ; concat] with the concat in
    `layout` (keyframes.concat_latent); sampling starts from the keyframes' BGN condition (their
    per-frame blend) at t_n, and every keyframe's frame of the result is its latent exactly.
    bgn_sampling "consistent": every state on the BGN marginal of (t_m, t_n) (bgn_sampling module;
    it ends on the clean sample whatever final_step says)."""
    bgn.check_window(t_m, t_n, len(alphas_cumprod))
    _check_steps(steps, t_n + 1)
    condition = keyframes.blend(given)
    concat = keyframes.concat_latent(given, layout)
    if noise is None:
        noise = torch.randn(condition.shape, generator=generator, device=condition.device, dtype=condition.dtype)
    elif noise.shape != condition.shape:
        raise ValueError(f"noise has shape {list(noise.shape)}, expected the condition's {list(condition.shape)}")
    x = bgn.inference_start(condition, noise, t_n, alphas_cumprod)

    def pin_keyframes(x_next: torch.Tensor, abar_next: float) -> torch.Tensor:
        return keyframes.pin(x_next, given, noise, abar_next)

    def denoise_with_concat(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return denoise(torch.cat([x_t, concat], dim=1), t)

    timesteps = make_timesteps(steps, "uniform_trailing", t_start=t_n, timesteps=len(alphas_cumprod))
    video = _sample_from_bgn_start(
        bgn_sampling, sampler, denoise_with_concat, x, alphas_cumprod, timesteps, prediction, condition, t_m, t_n,
        eta=eta, generator=generator, callback=callback, scale_arr=scale_arr, after_step=pin_keyframes,
        final_step=final_step,
    )
    video[:, :, list(given.positions)] = given.latents.to(video.dtype)
    return video


# ----------------------------------------------------------------- tiled denoising


def _windows(size: int, tile: int, overlap: int) -> list[int]:
    if tile >= size:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool, device) -> torch.Tensor:
    """1 inside, rising linearly over the overlap at an interior edge (never 0)."""
    weight = torch.ones(length, device=device, dtype=torch.float32)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        if not at_start:
            weight[:overlap] = torch.minimum(weight[:overlap], ramp)
        if not at_end:
            weight[-overlap:] = torch.minimum(weight[-overlap:], ramp.flip(0))
    return weight


def tiled(
    denoise: Denoiser, tile_frames: int, tile_height: int, tile_width: int, overlap_frames: int = 4, overlap_space: int = 8
) -> Denoiser:
    """A denoiser that runs `denoise` on overlapping [tile_frames, tile_height, tile_width]
    windows of the latent and blends them with linear ramps across the seams."""
    if min(tile_frames, tile_height, tile_width) < 1:
        raise ValueError("tile sizes must be positive")
    if overlap_frames >= tile_frames or overlap_space >= min(tile_height, tile_width) or min(overlap_frames, overlap_space) < 0:
        raise ValueError("overlaps must be non-negative and smaller than the tiles")

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, _, frames, height, width = x.shape
        spans = [
            (_windows(frames, tile_frames, overlap_frames), min(tile_frames, frames), overlap_frames, frames),
            (_windows(height, tile_height, overlap_space), min(tile_height, height), overlap_space, height),
            (_windows(width, tile_width, overlap_space), min(tile_width, width), overlap_space, width),
        ]
        if all(len(starts) == 1 for starts, *_ in spans):
            return denoise(x, t)
        out, total = None, torch.zeros(frames, height, width, device=x.device)
        for f0 in spans[0][0]:
            for h0 in spans[1][0]:
                for w0 in spans[2][0]:
                    index = (slice(None), slice(None), slice(f0, f0 + spans[0][1]),
                             slice(h0, h0 + spans[1][1]), slice(w0, w0 + spans[2][1]))
                    piece = denoise(x[index].contiguous(), t)
                    weights = [
                        _ramp(length, overlap, start == 0, start + length == size, x.device)
                        for start, (_, length, overlap, size) in zip((f0, h0, w0), spans)
                    ]
                    weight = weights[0][:, None, None] * weights[1][None, :, None] * weights[2][None, None, :]
                    if out is None:
                        out = piece.new_zeros((x.shape[0], piece.shape[1], frames, height, width))
                    out[index] += piece * weight.to(piece.dtype)
                    total[index[2:]] += weight
        return out / total.to(out.dtype)

    return run


# ------------------------------------------------------------------ pixels <-> latents


def encode_frames(encode: Codec, frames: torch.Tensor, chunk: int = 4,
                  before_each: Optional[Callable[[], None]] = None) -> torch.Tensor:
    """[T, 3, H, W] pixels -> [1, C, T, H/8, W/8] latents, `chunk` frames per encoder call."""
    check_pixel_video(frames)
    return in_chunks(encode, frames, chunk, before_each).transpose(0, 1).unsqueeze(0)


def decode_frames(decode: Codec, latents: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """[1, C, T, h, w] latents -> [T, 3, 8h, 8w] pixels, `chunk` frames per decoder call."""
    _check_latent_shape(latents.shape)
    return in_chunks(decode, latents[0].transpose(0, 1), chunk)


def super_resolve_latents(
    denoise: Denoiser,
    condition: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    prediction: str,
    strength: float = 0.7,
    steps: int = 7,
    generator: Optional[torch.Generator] = None,
    tile: Optional[tuple[int, int, int]] = (16, 40, 64),
    overlap: tuple[int, int] = (4, 8),
    sampler: str = "dpmpp_2m",
    callback: Optional[Callback] = None,
    bgn_sampling: str = "plain",
    t_m: int = bgn.SUPER_RESOLUTION_WINDOW[0],
) -> torch.Tensor:
    """F_SR on the encoded upsampled video: start at t_n = strength * T from the condition
    (BGN, paper 3.4) and sample `steps` steps. `tile=None` runs the whole latent at once.
    bgn_sampling "consistent": every state on the BGN marginal of (t_m, t_n) towards the condition."""
    _check_latent_shape(condition.shape)
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    t_n = min(len(alphas_cumprod) - 1, round(strength * len(alphas_cumprod)))
    _check_steps(steps, t_n + 1)
    noise = torch.randn(condition.shape, generator=generator, device=condition.device, dtype=condition.dtype)
    x = bgn.inference_start(condition, noise, t_n, alphas_cumprod)
    if tile is not None:
        denoise = tiled(denoise, *tile, *overlap)
    timesteps = make_timesteps(steps, "uniform_trailing", t_start=t_n, timesteps=len(alphas_cumprod))
    return _sample_from_bgn_start(bgn_sampling, sampler, denoise, x, alphas_cumprod, timesteps, prediction, condition,
                                  min(t_m, t_n - 1), t_n, generator=generator, callback=callback)


def super_resolve(
    denoise: Denoiser,
    encode: Codec,
    decode: Optional[Codec],
    frames: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    prediction: str,
    height: int = 720,
    width: int = 1280,
    vae_chunk: int = 2,
    before_each_chunk: Optional[Callable[[], None]] = None,
    **options,
) -> torch.Tensor:
    """[T, 3, h, w] low-resolution pixels -> [T, 3, height, width] pixels, or with `decode`
    None the [1, C, T, height/8, width/8] latents (what a ComfyUI LATENT output needs). The
    low-resolution frames may have any size: only the upsampled ones meet the VAE."""
    check_pixel_video(frames, multiple_of_8=False)
    upsampled = upsample_frames(frames, height, width)
    condition = encode_frames(encode, upsampled, vae_chunk, before_each_chunk)
    del upsampled
    result = super_resolve_latents(denoise, condition, alphas_cumprod, prediction, **options)
    return result if decode is None else decode_frames(decode, result, vae_chunk)
