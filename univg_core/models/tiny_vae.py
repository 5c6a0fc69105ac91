"""UniVG Mini's VAE: a tiny convolutional autoencoder (8x down, 4 latent channels) in the
key layout of TAESD (`taesd_encoder.N.*`, `taesd_decoder.N.*`), which ComfyUI's own
`comfy.sd.VAE` recognises and loads from the checkpoint file.

The encoder takes pixels in [0, 1] and gives raw latents; the decoder turns latents back
into pixels in [0, 1] (ComfyUI maps its [-1, 1] convention on both sides). Module indices
follow the layout: convolutions, residual blocks (three 3x3 convolutions with ReLU and a
ReLU after the skip sum), stride-2 convolutions to go down, nearest upsampling to go up,
and a soft clamp (3 tanh(x / 3)) before decoding.
"""

from __future__ import annotations

import torch
import torch.nn as nn

WIDTH = 64
LATENT_CHANNELS = 4
DOWNSAMPLE = 8


def _conv(n_in: int, n_out: int, **options) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **options)


class SoftClamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU(), _conv(width, width))
        nn.init.zeros_(self.conv[4].weight)  # each block starts as the identity: a deep stack trains from the start
        nn.init.zeros_(self.conv[4].bias)
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def make_encoder(latent_channels: int = LATENT_CHANNELS, width: int = WIDTH) -> nn.Sequential:
    layers: list[nn.Module] = [_conv(3, width), ResidualBlock(width)]
    for _ in range(3):  # three halvings: 8x
        layers += [_conv(width, width, stride=2, bias=False)] + [ResidualBlock(width) for _ in range(3)]
    return nn.Sequential(*layers, _conv(width, latent_channels))


def make_decoder(latent_channels: int = LATENT_CHANNELS, width: int = WIDTH, shuffle_last: bool = False) -> nn.Sequential:
    """shuffle_last: the last doubling by a convolution to 4x the channels and a pixel shuffle before
    the stage's convolution, so each pixel of a 2x2 block has weights of its own (nearest upsampling
    gives a flat region one value at every pixel: no pattern that alternates pixel by pixel can be
    drawn inside it)."""
    layers: list[nn.Module] = [SoftClamp(), _conv(latent_channels, width), nn.ReLU()]
    for stage in range(3):
        layers += [ResidualBlock(width) for _ in range(3)]
        if shuffle_last and stage == 2:
            layers += [_conv(width, 4 * width, bias=False), nn.PixelShuffle(2)]
        else:
            layers += [nn.Upsample(scale_factor=2)]
        layers += [_conv(width, width, bias=False)]
    return nn.Sequential(*layers, ResidualBlock(width), _conv(width, 3))


class TinyVAE(nn.Module):
    """encode: [N, 3, H, W] in [0, 1] -> [N, 4, H/8, W/8]; decode: the way back."""

    def __init__(self, latent_channels: int = LATENT_CHANNELS):
        super().__init__()
        self.taesd_encoder = make_encoder(latent_channels)
        self.taesd_decoder = make_decoder(latent_channels)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[2] % DOWNSAMPLE or pixels.shape[3] % DOWNSAMPLE:
            raise ValueError(f"expected pixels [N, 3, H, W] with H, W multiples of {DOWNSAMPLE}, got {list(pixels.shape)}")
        return self.taesd_encoder(pixels).contiguous()  # channels-last weights give channels-last results

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.taesd_decoder(latents).contiguous()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))


class ShuffleTinyVAE(TinyVAE):
    """TinyVAE whose decoder's last doubling is a pixel shuffle (`shuffle_decoder.N.*`): the VAE of
    UniVG Mini's super-resolution, which draws the world's pixel patterns at 128x128."""

    SHUFFLE = 16  # the index of the shuffle's convolution in the decoder; the Mini's decoder has Upsample there

    def __init__(self, latent_channels: int = LATENT_CHANNELS):
        nn.Module.__init__(self)
        self.taesd_encoder = make_encoder(latent_channels)
        self.shuffle_decoder = make_decoder(latent_channels, shuffle_last=True)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.shuffle_decoder(latents).contiguous()

    @classmethod
    def starting_from(cls, vae: TinyVAE) -> "ShuffleTinyVAE":
        """The same encoder and decoder as `vae`, the shuffle's convolution set to copy each channel to
        the four pixels of its block: it decodes exactly as `vae` until trained."""
        shuffle = cls(vae.taesd_decoder[1].in_channels)
        shuffle.taesd_encoder.load_state_dict(vae.taesd_encoder.state_dict())
        state = {}
        for key, value in vae.taesd_decoder.state_dict().items():
            index, rest = key.split(".", 1)
            state[f"{int(index) + (int(index) > cls.SHUFFLE)}.{rest}"] = value
        weight = torch.zeros(4 * WIDTH, WIDTH, 3, 3)
        for channel in range(WIDTH):
            weight[4 * channel : 4 * channel + 4, channel, 1, 1] = 1.0
        state[f"{cls.SHUFFLE}.weight"] = weight
        shuffle.shuffle_decoder.load_state_dict(state)
        return shuffle


def load_tiny_vae(path) -> TinyVAE:
    """A TinyVAE (or ShuffleTinyVAE, told by its keys) from its .safetensors (any stored dtype), in
    float32 and eval mode, its convolutions' weights channels-last (the CPU's convolutions run
    faster on them; the results agree to float32 rounding)."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    vae = ShuffleTinyVAE() if any(key.startswith("shuffle_decoder.") for key in state) else TinyVAE()
    vae.load_state_dict({key: value.float() for key, value in state.items()})
    return vae.eval().to(memory_format=torch.channels_last)
