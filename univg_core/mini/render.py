"""Render UniVG Mini videos with the core pipeline alone (no ComfyUI): the evaluation and the
tests score what the trained models do with these; the nodes render the same maths through
ComfyUI's loaders. Frames in and out are uint8 [T, H, W, 3]."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from safetensors.torch import load_file

from ..checkpoints import LoadedCheckpoint, load_checkpoint
from ..configs import start_timestep
from ..diffusion import keyframes, pipelines
from ..diffusion.guidance import Condition, make_guided_denoiser, unet_model_fn
from ..diffusion.schedule import alphas_cumprod_for
from ..training.clip_towers import load_text_tower, load_vision_tower, tokenize
from ..models.tiny_vae import TinyVAE, load_tiny_vae
from .models import companion_vae


def load_mini_vae(path: str | Path) -> TinyVAE:
    return load_tiny_vae(path).requires_grad_(False)


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [T, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    return (pixels.clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


class MiniRenderer:
    """F_B text-to-video, F_A animation and F_SR super-resolution of UniVG Mini files."""

    def __init__(self, text_encoder: str | Path, vae: str | Path, image_encoder: Optional[str | Path] = None):
        self.text = load_text_tower({"model." + key: value for key, value in load_file(str(text_encoder)).items()})
        self.vae = load_mini_vae(vae)
        self._vaes = {Path(vae).name: self.vae}  # by file name; a model's own VAE lies beside `vae`
        self._vae_folder = Path(vae).parent
        self._image_encoder = image_encoder
        self._vision = None
        self._models: dict[str, LoadedCheckpoint] = {}
        self._tokens: dict[str, torch.Tensor] = {}
        self._features: dict[bytes, torch.Tensor] = {}

    def model(self, path: str | Path, dtype: torch.dtype = torch.float32) -> LoadedCheckpoint:
        """The UNet file at `path`, its weights in `dtype` (it computes in it)."""
        key = f"{path} {dtype}"
        if key not in self._models:
            self._models[key] = load_checkpoint(path, dtype=dtype, device="cpu")
        return self._models[key]

    def tokens(self, caption: str) -> torch.Tensor:
        if caption not in self._tokens:
            with torch.no_grad():
                self._tokens[caption] = self.text(tokenize([caption]))
        return self._tokens[caption]

    def vision_features(self, image: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] -> the vision tower's tokens [1, N, width] (seconds on a CPU: the
        tower is a full-size ViT-H/14)."""
        if self._image_encoder is None:
            raise ValueError("this renderer has no image encoder; give MiniRenderer(image_encoder=...)")
        if self._vision is None:
            state = {"model." + key: value for key, value in load_file(str(self._image_encoder)).items()}
            self._vision = load_vision_tower(state)
        key = np.ascontiguousarray(image).tobytes() + str(image.shape).encode()
        if key not in self._features:
            with torch.no_grad():
                self._features[key] = self._vision(to_pixels(image[None]))
        return self._features[key]

    def _denoiser(self, model: LoadedCheckpoint, captions: Sequence[str], text_weight: float, negative: str = "",
                  images: Optional[Sequence[np.ndarray]] = None, image_weight: float = 0.0, guidance_from_t: int = 0):
        """UniVG's multi-condition guidance for a batch of videos, one caption each: F(0) with the
        empty prompt (and the grey null image when images are given), F(T) with the caption,
        F(I) with the image (images: one per video)."""
        batch = len(captions)
        null = self.tokens(negative).expand(batch, -1, -1)
        text = torch.cat([self.tokens(caption) for caption in captions])
        picture = null_picture = None
        if images is not None:
            if model.image_proj is None:
                raise ValueError(f"{model.path}: this model has no image branch")
            grey = np.full_like(images[0], 128)
            with torch.no_grad():
                picture = torch.cat([model.image_proj(self.vision_features(image)) for image in images])
                null_picture = model.image_proj(self.vision_features(grey)).expand(batch, -1, -1)
        conditions = {"null": Condition(null, null_picture), "text": Condition(text, null_picture),
                      "image": Condition(null, picture)}
        model_fn = unet_model_fn(model.unet, fs=model.config.unet.default_fs)
        return make_guided_denoiser(model_fn, "multi", conditions, w_text=text_weight, w_image=image_weight,
                                    guidance_rescale=model.config.guidance_rescale, guidance_from_t=guidance_from_t)

    def vae_for(self, model: LoadedCheckpoint) -> TinyVAE:
        """The VAE the model's metadata names (F_SR's own), else the renderer's."""
        name = companion_vae(model.metadata)
        if name not in self._vaes:
            self._vaes[name] = load_mini_vae(self._vae_folder / name)
        return self._vaes[name]

    def encode(self, model: LoadedCheckpoint, pixels: torch.Tensor) -> torch.Tensor:
        """[T, 3, H, W] in [0, 1] -> model latents [T, C, H/8, W/8]."""
        return self.vae_for(model).encode(pixels) * model.config.schedule.scale_factor

    def decode(self, model: LoadedCheckpoint, latents: torch.Tensor) -> np.ndarray:
        """[1, C, T, h, w] model latents -> uint8 frames."""
        return to_uint8(self.vae_for(model).decode(latents[0].transpose(0, 1) / model.config.schedule.scale_factor))

    def decode_each(self, model: LoadedCheckpoint, latents: torch.Tensor) -> list[np.ndarray]:
        """[B, C, T, h, w] -> B uint8 videos, decoded one video at a time (as a batch of one is)."""
        return [self.decode(model, latents[index:index + 1]) for index in range(latents.shape[0])]

    @staticmethod
    def _seeded_noise(shape: Sequence[int], seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Generator]:
        """One draw of `shape` (batch 1) per seed, stacked: video i of a batch gets the noise it
        gets when rendered alone with seeds[i]. Also the first seed's generator after its draw,
        for a stochastic sampler's later draws (a batch of one continues its own stream)."""
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        return torch.cat([torch.randn(shape, generator=generator) for generator in generators]), generators[0]

    @staticmethod
    def _check_batch(captions: Sequence[str], seeds: Sequence[int], **others: Sequence) -> None:
        lengths = {"captions": len(captions), "seeds": len(seeds), **{k: len(v) for k, v in others.items()}}
        if len(set(lengths.values())) != 1 or not captions:
            raise ValueError(f"a batch needs one caption and one seed per video (and as many of the rest), got {lengths}")

    def text_to_video(self, base: str | Path, caption: str, seed: int, frames: int = 8, size: int = 64,
                      steps: int = 25, text_weight: float = 7.5, image: Optional[np.ndarray] = None,
                      image_weight: float = 0.0) -> np.ndarray:
        """F_B from the caption, and from `image` (uint8 [H, W, 3]) when given, with weights
        w_T = text_weight and w_I = image_weight."""
        return self.text_to_videos(base, [caption], [seed], frames, size, steps, text_weight, image, image_weight)[0]

    @torch.no_grad()
    def text_to_videos(self, base: str | Path, captions: Sequence[str], seeds: Sequence[int], frames: int = 8,
                       size: int = 64, steps: int = 25, text_weight: float = 7.5, image: Optional[np.ndarray] = None,
                       image_weight: float = 0.0, images: Optional[Sequence[np.ndarray]] = None) -> list[np.ndarray]:
        """text_to_video for a batch: video i from captions[i] and seeds[i] (and images[i], or
        `image` for every video), sampled together."""
        if image is not None and images is not None:
            raise ValueError("give image (one for every video) or images (one per video), not both")
        images = [image] * len(captions) if image is not None else images
        self._check_batch(captions, seeds, **({"images": images} if images is not None else {}))
        model = self.model(base)
        shape = (1, model.config.unet.in_channels, frames, size // 8, size // 8)
        noise, _ = self._seeded_noise(shape, seeds)
        denoiser = self._denoiser(model, captions, text_weight, images=images, image_weight=image_weight)
        latents = pipelines.generate(denoiser, noise.shape, alphas_cumprod_for(model.config.schedule),
                                     model.config.prediction, steps=steps, sampler="ddim",
                                     spacing=model.config.schedule.timestep_spacing, initial_noise=noise)
        return self.decode_each(model, latents)

    def animate(self, animation: str | Path, first_frame: np.ndarray, caption: str, seed: int, frames: int = 8,
                steps: int = 25, text_weight: float = 7.5, t_n: Optional[int] = None,
                sampler: str = "ddim", guidance_from_t: int = 0, dtype: torch.dtype = torch.float32) -> np.ndarray:
        """first_frame: uint8 [H, W, 3]; sampling starts from the BGN condition at t_n (default:
        the model's window, or 990 for a model trained without BGN); text guidance only at
        t >= guidance_from_t; the UNet in `dtype`."""
        return self.animate_many(animation, [first_frame], [caption], [seed], frames, steps, text_weight, t_n,
                                 sampler, guidance_from_t, dtype)[0]

    def animate_many(self, animation: str | Path, first_frames: Sequence[np.ndarray], captions: Sequence[str],
                     seeds: Sequence[int], frames: int = 8, steps: int = 25, text_weight: float = 7.5,
                     t_n: Optional[int] = None, sampler: str = "ddim", guidance_from_t: int = 0,
                     dtype: torch.dtype = torch.float32) -> list[np.ndarray]:
        """animate for a batch: video i from first_frames[i], captions[i] and seeds[i], sampled together."""
        return self.through_keyframes(animation, "first", first_frames, None, captions, seeds, frames, steps,
                                      text_weight, t_n, sampler, guidance_from_t, dtype)

    def interpolate_many(self, interpolation: str | Path, first_frames: Sequence[np.ndarray],
                         last_frames: Sequence[np.ndarray], captions: Sequence[str], seeds: Sequence[int],
                         frames: int = 8, steps: int = 25, text_weight: float = 7.5, t_n: Optional[int] = None,
                         sampler: str = "ddim", guidance_from_t: int = 0, bgn_sampling: str = "plain") -> list[np.ndarray]:
        """F_I for a batch: video i runs from first_frames[i] to last_frames[i]."""
        return self.through_keyframes(interpolation, "first_last", first_frames, last_frames, captions, seeds, frames,
                                      steps, text_weight, t_n, sampler, guidance_from_t, bgn_sampling=bgn_sampling)

    @torch.no_grad()
    def through_keyframes(self, model_path: str | Path, mode: str, first_frames: Sequence[np.ndarray],
                          last_frames: Optional[Sequence[np.ndarray]], captions: Sequence[str], seeds: Sequence[int],
                          frames: int = 8, steps: int = 25, text_weight: float = 7.5, t_n: Optional[int] = None,
                          sampler: str = "ddim", guidance_from_t: int = 0,
                          dtype: torch.dtype = torch.float32, bgn_sampling: str = "plain") -> list[np.ndarray]:
        """Videos through keyframes (keyframes.MODES): the first frame alone in the repeat layout
        (F_A), else the sparse layout (F_I); sampling starts from their blend at t_n (default: the
        model's window, or 990 for a model trained without BGN); bgn_sampling as the pipelines'."""
        self._check_batch(captions, seeds, first_frames=first_frames, **({"last_frames": last_frames} if last_frames else {}))
        model = self.model(model_path, dtype)
        first = torch.cat([self.encode(model, to_pixels(frame[None])) for frame in first_frames])
        last = torch.cat([self.encode(model, to_pixels(frame[None])) for frame in last_frames]) if last_frames else None
        latents = self.latents_through_keyframes(model, mode, first, last, captions, seeds, frames, steps, text_weight,
                                                 t_n, sampler, guidance_from_t, bgn_sampling)
        return self.decode_each(model, latents)

    def latents_through_keyframes(self, model: LoadedCheckpoint, mode: str, first: torch.Tensor,
                                  last: Optional[torch.Tensor], captions: Sequence[str], seeds: Sequence[int],
                                  frames: int = 8, steps: int = 25, text_weight: float = 7.5, t_n: Optional[int] = None,
                                  sampler: str = "ddim", guidance_from_t: int = 0,
                                  bgn_sampling: str = "plain") -> torch.Tensor:
        """through_keyframes from model latents [B, C, h, w] of the keyframes, to latents [B, C, T, h, w]."""
        given = keyframes.keyframes_for(mode, first, frames, last=last)
        t_n = t_n if t_n is not None else start_timestep(model.config, "animation")
        t_m = min(model.config.bgn_t_m or 0, t_n - 1)
        noise, generator = self._seeded_noise((1, first.shape[1], frames, *first.shape[2:]), seeds)
        with torch.no_grad():
            return pipelines.animate_keyframes(
                self._denoiser(model, captions, text_weight, guidance_from_t=guidance_from_t), given,
                "repeat" if mode == "first" else "sparse", alphas_cumprod_for(model.config.schedule),
                model.config.prediction, steps=steps, t_m=t_m, t_n=t_n, sampler=sampler, noise=noise,
                generator=generator, bgn_sampling=bgn_sampling)

    @torch.no_grad()
    def super_resolve(self, sr: str | Path, low_res: np.ndarray, caption: str, seed: int, steps: int = 7,
                      strength: float = 0.7, text_weight: float = 7.5, bgn_sampling: str = "plain") -> np.ndarray:
        """low_res: uint8 [T, h, w, 3] -> uint8 [T, 2h, 2w, 3]; bgn_sampling as the pipelines'."""
        model = self.model(sr)
        pixels = to_pixels(low_res)
        latents = pipelines.super_resolve(
            self._denoiser(model, [caption], text_weight), lambda frames: self.encode(model, frames), None, pixels,
            alphas_cumprod_for(model.config.schedule), model.config.prediction, height=2 * pixels.shape[2],
            width=2 * pixels.shape[3], strength=strength, steps=steps, tile=None,
            generator=torch.Generator().manual_seed(seed), bgn_sampling=bgn_sampling,
            t_m=model.config.bgn_t_m or 0,
        )
        return self.decode(model, latents)
