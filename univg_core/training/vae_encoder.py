"""The encoder half of the SD KL autoencoder (`first_stage_model.*` of the lvdm checkpoints),
used by training to turn frames into latents. Keys follow the LDM layout: `encoder.conv_in`,
`encoder.down.N.block.M`, `encoder.down.N.downsample.conv`, `encoder.mid.{block_1,attn_1,block_2}`,
`encoder.norm_out`, `encoder.conv_out`, `quant_conv`. The size is read from the weights, so the
full SD VAE and tiny test VAEs load alike. Inference decodes through ComfyUI's VAE instead."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.tiny_vae import DOWNSAMPLE, make_encoder


class VAEError(ValueError):
    pass


@dataclass(frozen=True)
class EncoderConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.norm1 = _norm(channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.norm2 = _norm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels, 1x1-conv projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)

        def tokens(conv: nn.Conv2d) -> torch.Tensor:
            return conv(h).flatten(2).transpose(1, 2).unsqueeze(1)  # [B, 1, HW, C]

        out = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        return x + self.proj_out(out.squeeze(1).transpose(1, 2).reshape(batch, channels, height, width))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # the LDM's asymmetric padding


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        ch = config.ch
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        channels = ch
        for level, mult in enumerate(config.ch_mult):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock(channels, ch * mult))
                channels = ch * mult
            if level != len(config.ch_mult) - 1:
                stage.downsample = Downsample(channels)
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(channels, channels)
        self.mid.attn_1 = AttnBlock(channels)
        self.mid.block_2 = ResnetBlock(channels, channels)
        self.norm_out = _norm(channels)
        self.conv_out = nn.Conv2d(channels, 2 * config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class VAEEncoder(nn.Module):
    """Frames in [-1, 1], [N, 3, H, W] -> scaled latent means [N, z, H/f, W/f]."""

    def __init__(self, config: EncoderConfig, scale_factor: float = 0.18215):
        super().__init__()
        self.config = config
        self.scale_factor = scale_factor
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.z_channels, 1)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        f = self.config.downsample
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2] % f or frames.shape[3] % f:
            raise VAEError(f"the VAE encoder takes [N, 3, H, W] frames with H and W multiples of {f}, got {list(frames.shape)}")
        dtype = self.quant_conv.weight.dtype
        moments = self.quant_conv(self.encoder(frames.to(dtype)))
        mean = moments[:, : self.config.z_channels]  # the posterior's mode: deterministic latents for the cache
        return (mean * self.scale_factor).float()


def infer_encoder_config(state: dict) -> EncoderConfig:
    """The encoder size from `first_stage_model.*` weights (prefix already stripped)."""
    if "encoder.conv_in.weight" not in state or "quant_conv.weight" not in state:
        raise VAEError(
            "no KL-VAE encoder in the checkpoint: expected 'first_stage_model.encoder.conv_in.weight' and "
            "'first_stage_model.quant_conv.weight'"
        )
    ch = state["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    ch_mult = tuple(state[f"encoder.down.{level}.block.0.conv1.weight"].shape[0] // ch for level in levels)
    return EncoderConfig(ch=ch, ch_mult=ch_mult, num_res_blocks=len(blocks), z_channels=state["quant_conv.weight"].shape[0] // 2)


class TinyVAEEncoder(nn.Module):
    """UniVG Mini's VAE (TAESD layout, `taesd_encoder.*`): frames in [-1, 1] -> latents x scale_factor,
    as the nodes see them after ComfyUI's TAESD encode."""

    def __init__(self, latent_channels: int, scale_factor: float):
        super().__init__()
        self.scale_factor = scale_factor
        self.taesd_encoder = make_encoder(latent_channels)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2] % DOWNSAMPLE or frames.shape[3] % DOWNSAMPLE:
            raise VAEError(
                f"the VAE encoder takes [N, 3, H, W] frames with H and W multiples of {DOWNSAMPLE}, got {list(frames.shape)}"
            )
        dtype = next(self.parameters()).dtype
        return (self.taesd_encoder((frames.to(dtype) + 1) / 2) * self.scale_factor).float()


def _load_tiny_vae_encoder(state: dict, scale_factor: float) -> TinyVAEEncoder:
    wanted = {k: v for k, v in state.items() if k.startswith("taesd_encoder.")}
    model = TinyVAEEncoder(wanted[TAESD_LATENT_KEY].shape[0], scale_factor)
    try:
        model.load_state_dict(wanted, strict=True)
    except RuntimeError as error:
        raise VAEError(f"VAE encoder weights do not match the TAESD layout of UniVG Mini: {error}") from None
    return model


TAESD_LATENT_KEY = "taesd_encoder.14.weight"  # the last convolution: latent channels x width


def load_vae_encoder(state: dict, scale_factor: float = 0.18215, dtype=torch.float32, device="cpu") -> nn.Module:
    """Build the encoder from a `first_stage_model.*` state dict (prefix stripped): the LDM
    KL-VAE of the lvdm checkpoints, or UniVG Mini's TAESD-layout VAE. The decoder keys are
    ignored, every encoder key must be present with its shape."""
    if TAESD_LATENT_KEY in state:
        return _load_tiny_vae_encoder(state, scale_factor).to(device=device, dtype=dtype).eval().requires_grad_(False)
    config = infer_encoder_config(state)
    model = VAEEncoder(config, scale_factor)
    wanted = {k: v for k, v in state.items() if k.startswith("encoder.") or k.startswith("quant_conv.")}
    try:
        model.load_state_dict(wanted, strict=True)
    except RuntimeError as error:
        raise VAEError(f"VAE encoder weights do not match the LDM layout: {error}") from None
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
