"""The compact UNet3D shared by UniVG's base, animation and super-resolution models.

It is the lvdm video UNet (VideoCrafter1/2, DynamiCrafter) with the same module tree,
so their checkpoints load key-for-key. Call: `unet(x, timesteps, context=text, image_context=image, fs=fps)`
with x [B, C, T, H, W]. `context` is text tokens only, of any length (ComfyUI gives 154+
for a long prompt); image tokens reach the image branch only through `image_context`. A
context built the lvdm way (77 text tokens followed by the image tokens in one tensor) is
split by its caller with `split_original_context`: the UNet never splits by position.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..configs import UNetConfig
from .layers import timestep_embedding, zero_init
from .operations import TORCH_OPERATIONS, check_operations, float32_group_norm
from .resblock import Downsample, ResBlock, Upsample
from .transformer import SpatialTransformer, TemporalTransformer

Number = Union[int, float]


class UNetStage(nn.ModuleList):
    """One `input_blocks.N` / `middle_block` / `output_blocks.N` entry: layers applied in order."""

    def forward(self, h, emb, text, image, batch):
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb, batch)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, text, image)
            elif isinstance(layer, TemporalTransformer):
                frames_batch, channels, height, width = h.shape
                video = h.view(batch, frames_batch // batch, channels, height, width).transpose(1, 2)
                h = layer(video).transpose(1, 2).reshape(frames_batch, channels, height, width)
            else:
                h = layer(h)
        return h


class UNet3D(nn.Module):
    """`operations`: the namespace its Linear/Conv/Norm layers are built from (torch.nn, or a
    host's casting layers: models/operations.py). `compute_dtype`: the dtype it computes in when
    that differs from its weights' (weights stored in fp8 and cast per layer); None: the weights'."""

    def __init__(self, config: UNetConfig, operations=TORCH_OPERATIONS):
        super().__init__()
        ops = self.operations = check_operations(operations)
        self.config = config
        self.gradient_checkpointing = False
        self.compute_dtype: Optional[torch.dtype] = None
        mc, emb_dim, groups = config.model_channels, config.time_embed_dim, config.norm_groups

        self.time_embed = nn.Sequential(ops.Linear(mc, emb_dim), nn.SiLU(), ops.Linear(emb_dim, emb_dim))
        if config.fs_condition:
            self.fps_embedding = nn.Sequential(ops.Linear(mc, emb_dim), nn.SiLU(), ops.Linear(emb_dim, emb_dim))
            zero_init(self.fps_embedding[2])

        self.input_blocks = nn.ModuleList([UNetStage([ops.Conv2d(config.in_channels, mc, 3, padding=1)])])
        if config.addition_attention:
            self.init_attn = UNetStage(
                [
                    TemporalTransformer(
                        mc,
                        config.addition_attention_heads,
                        config.num_head_channels,
                        depth=config.transformer_depth,
                        use_linear=False,  # the originals build this one with conv projections
                        norm_groups=groups,
                        relative_length=self._relative_length(),
                        operations=ops,
                    )
                ]
            )

        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers = [self._resblock(ch, mult * mc)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers += self._transformers(ch)
                self.input_blocks.append(UNetStage(layers))
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(UNetStage([Downsample(ch, ops)]))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = UNetStage([self._resblock(ch, ch), *self._transformers(ch), self._resblock(ch, ch)])

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [self._resblock(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers += self._transformers(ch)
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch, ops))
                    ds //= 2
                self.output_blocks.append(UNetStage(layers))

        self.out = nn.Sequential(
            float32_group_norm(ops, groups, ch), nn.SiLU(), zero_init(ops.Conv2d(mc, config.out_channels, 3, padding=1))
        )

    def _relative_length(self) -> Optional[int]:
        return self.config.temporal_length if self.config.use_relative_position else None

    def _resblock(self, channels_in: int, channels_out: int) -> ResBlock:
        c = self.config
        return ResBlock(channels_in, c.time_embed_dim, channels_out, temporal_conv=c.temporal_conv,
                        norm_groups=c.norm_groups, operations=self.operations)

    def _transformers(self, ch: int) -> list[nn.Module]:
        c = self.config
        heads, head_dim = ch // c.num_head_channels, c.num_head_channels
        layers: list[nn.Module] = [
            SpatialTransformer(
                ch,
                heads,
                head_dim,
                c.context_dim,
                depth=c.transformer_depth,
                use_linear=c.use_linear,
                norm_groups=c.norm_groups,
                image_branch=c.image_cross_attention,
                image_scale=c.image_cross_attention_scale,
                image_gate=c.image_cross_attention_scale_learnable,
                operations=self.operations,
            )
        ]
        if c.temporal_attention:
            layers.append(
                TemporalTransformer(
                    ch,
                    heads,
                    head_dim,
                    depth=c.transformer_depth,
                    use_linear=c.use_linear,
                    norm_groups=c.norm_groups,
                    relative_length=self._relative_length(),
                    operations=self.operations,
                )
            )
        return layers

    @property
    def dtype(self) -> torch.dtype:
        """The dtype it computes in."""
        return self.compute_dtype or self.out[2].weight.dtype

    def _one_per_batch_entry(self, value, batch: int, device, default: Number) -> torch.Tensor:
        if value is None:
            value = default
        value = torch.as_tensor(value, device=device, dtype=torch.float32).flatten()
        if value.numel() == 1:
            return value.expand(batch)
        if value.numel() != batch:
            raise ValueError(f"expected one value or {batch} values (one per batch entry), got {value.numel()}")
        return value

    def split_original_context(self, context: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(text, image) from an lvdm-style combined context: exactly `text_context_len` (77)
        text tokens, then the image tokens. Only for tensors built that way: a ComfyUI prompt
        can be 154+ tokens long and has its image tokens in a separate entry."""
        length = self.config.text_context_len
        if context.ndim != 3 or context.shape[1] < length:
            raise ValueError(f"an original combined context is [B, {length} + image tokens, C], got {list(context.shape)}")
        image = context[:, length:] if context.shape[1] > length else None
        return context[:, :length], image

    def split_context(
        self, context: torch.Tensor, image_context: Optional[torch.Tensor], batch: int, frames: int
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Text tokens [B, L, C] one set per video, or [1, L, C] one set for every video
        (cross-attention projects them once and shares them with the frames), and image tokens the
        same way, or [(b t), n, C] when the model has `image_tokens_per_frame` and the context holds
        that many per frame."""
        c = self.config
        if context is None:
            raise ValueError("the UNet needs a text context [B, L, context_dim] (the encoding of '' for none)")
        if context.ndim != 3 or context.shape[-1] != c.context_dim:
            raise ValueError(f"context must be [B, L, {c.context_dim}], got {list(context.shape)}")

        def checked(tokens: torch.Tensor, what: str) -> torch.Tensor:
            if tokens.shape[0] not in (1, batch):
                raise ValueError(f"{what} has batch {tokens.shape[0]}, expected 1 or {batch} to match the latent")
            return tokens

        text = checked(context, "context")
        if image_context is None or not c.image_cross_attention:
            return text, None
        if image_context.ndim != 3 or image_context.shape[-1] != c.context_dim:
            raise ValueError(f"image_context must be [B, L, {c.context_dim}], got {list(image_context.shape)}")
        image = checked(image_context, "image_context")
        per_frame = c.image_tokens_per_frame
        if per_frame and image.shape[1] == frames * per_frame:
            image = image.expand(batch, -1, -1).reshape(batch * frames, per_frame, image.shape[-1])
        return text, image

    def forward(
        self,
        x: torch.Tensor,
        timesteps,
        context: Optional[torch.Tensor] = None,
        fs=None,
        image_context: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"x must be [B, {c.in_channels}, T, H, W], got {list(x.shape)}")
        batch, channels, frames, height, width = x.shape
        step = c.spatial_downsample
        if height % step or width % step:
            raise ValueError(
                f"latent height and width must be multiples of {step} (image size multiples of {8 * step}), "
                f"got {height}x{width}"
            )
        dtype = self.dtype
        timesteps = self._one_per_batch_entry(timesteps, batch, x.device, 0)
        emb = self.time_embed(timestep_embedding(timesteps, c.model_channels).to(dtype))
        if c.fs_condition:
            fs = self._one_per_batch_entry(fs, batch, x.device, c.default_fs)
            emb = emb + self.fps_embedding(timestep_embedding(fs, c.model_channels).to(dtype))
        emb = emb.repeat_interleave(frames, dim=0)
        text, image = self.split_context(context, image_context, batch, frames)
        text = text.to(dtype)
        image = None if image is None else image.to(dtype)

        h = x.transpose(1, 2).reshape(batch * frames, channels, height, width).to(dtype)
        skips = []
        for index, stage in enumerate(self.input_blocks):
            h = self._run(stage, h, emb, text, image, batch)
            if index == 0 and c.addition_attention:
                h = self._run(self.init_attn, h, emb, text, image, batch)
            skips.append(h)
        h = self._run(self.middle_block, h, emb, text, image, batch)
        for stage in self.output_blocks:
            h = self._run(stage, torch.cat([h, skips.pop()], dim=1), emb, text, image, batch)
        out = self.out(h)
        out = out.view(batch, frames, -1, height, width).transpose(1, 2)
        return out.to(x.dtype).contiguous()

    def _run(self, stage: UNetStage, h, emb, text, image, batch):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, h, emb, text, image, batch, use_reentrant=False)
        return stage(h, emb, text, image, batch)


def expand_input_channels(unet: UNet3D, channels: int) -> UNet3D:
    """F_B -> F_A (paper 3.2): widen the input convolution to `channels`, new weights
    zero-initialised so the output is unchanged for any content of the new channels."""
    conv = unet.input_blocks[0][0]
    old = conv.in_channels
    if channels < old:
        raise ValueError(f"expand_input_channels: cannot shrink {old} input channels to {channels}")
    if channels == old:
        return unet
    wider = type(conv)(channels, conv.out_channels, 3, padding=1, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, :old] = conv.weight
        wider.bias.copy_(conv.bias)
    unet.input_blocks[0][0] = wider
    unet.config = dataclasses.replace(unet.config, in_channels=channels)
    return unet
