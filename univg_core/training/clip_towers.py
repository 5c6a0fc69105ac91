"""The OpenCLIP text and vision transformers in the lvdm checkpoint layout, for training:
`cond_stage_model.model.*` (SD2's text encoder, ViT-H/14 text tower) and
`embedder.model.visual.*` (ViT-H/14 vision tower). Sizes are read from the weights.

What they return matches what the nodes feed the UNet at inference through ComfyUI's encoders:
text = the penultimate layer's hidden states after `ln_final` (SD2 / lvdm "penultimate"), [N, 77, D];
image = the last layer's hidden states before `ln_post` (ComfyUI's `last_hidden_state`), [N, 257, W].
Tokenisation uses open_clip's BPE tokenizer (its vocabulary ships in the package)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from ..models.clip_image import clip_pixels

HEAD_WIDTH = 64
# the widths cannot tell the head count: OpenCLIP's ViT-H/14 vision tower uses 80-wide heads
VISION_HEAD_WIDTHS = {1280: 80}


class ClipError(ValueError):
    pass


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))

    def forward(self, x: torch.Tensor, mask=None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_width: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_width) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask=None, stop_before_last: int = 0) -> torch.Tensor:
        for block in self.resblocks[: len(self.resblocks) - stop_before_last]:
            x = block(x, mask)
        return x


@dataclass(frozen=True)
class TowerConfig:
    width: int
    layers: int
    mlp_width: int
    context: int  # text: token positions; vision: patch tokens + class token
    vocab: int = 0
    patch: int = 0

    @property
    def heads(self) -> int:
        head_width = VISION_HEAD_WIDTHS.get(self.width, HEAD_WIDTH) if self.patch else HEAD_WIDTH
        return max(1, self.width // head_width)

    @property
    def image_size(self) -> int:
        return int(round(math.sqrt(self.context - 1))) * self.patch


def _tower_config(state: dict, what: str) -> TowerConfig:
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    if not layers or "positional_embedding" not in state:
        raise ClipError(f"no OpenCLIP {what} tower in the checkpoint (expected transformer.resblocks.N.* and positional_embedding)")
    width = state["positional_embedding"].shape[1]
    mlp_width = state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    context = state["positional_embedding"].shape[0]
    vocab = state["token_embedding.weight"].shape[0] if "token_embedding.weight" in state else 0
    patch = state["conv1.weight"].shape[-1] if "conv1.weight" in state else 0
    return TowerConfig(width=width, layers=len(layers), mlp_width=mlp_width, context=context, vocab=vocab, patch=patch)


class TextTower(nn.Module):
    def __init__(self, config: TowerConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab, config.width)
        self.positional_embedding = nn.Parameter(torch.zeros(config.context, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.mlp_width)
        self.ln_final = nn.LayerNorm(config.width)
        self.text_projection = nn.Parameter(torch.zeros(config.width, config.width))  # unused: kept for the layout

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        positions = x.shape[1]
        causal_mask = torch.full((positions, positions), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
        x = self.transformer(x, causal_mask, stop_before_last=1)
        return self.ln_final(x).float()


class VisionTower(nn.Module):
    def __init__(self, config: TowerConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.conv1 = nn.Conv2d(3, width, config.patch, stride=config.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(config.context, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_width)
        self.ln_post = nn.LayerNorm(width)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, preprocess: str = "original") -> torch.Tensor:
        """images: [N, 3, H, W] in [0, 1], any size, resized without crop by `preprocess`
        (clip_image: "original" as the lvdm models were trained, or "comfyui")."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ClipError(f"the vision tower takes [N, 3, H, W] images, got {list(images.shape)}")
        dtype = self.conv1.weight.dtype
        x = clip_pixels(images, preprocess, size=self.config.image_size)
        x = self.conv1(x.to(dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        return self.transformer(self.ln_pre(x)).float()


def _load(make: Callable[[], nn.Module], state: dict, what: str) -> nn.Module:
    """The module built on the meta device and given the state's tensors themselves: no random
    initialisation to throw away and no second copy of a full-size tower in memory."""
    with torch.device("meta"):
        module = make()
    known = set(module.state_dict())
    try:
        module.load_state_dict({k: v for k, v in state.items() if k in known}, strict=True, assign=True)
    except RuntimeError as error:
        raise ClipError(f"{what} weights do not match the OpenCLIP layout: {error}") from None
    return module


def load_text_tower(state: dict, dtype=torch.float32, device="cpu") -> TextTower:
    """From `cond_stage_model.*` weights (prefix stripped; the inner `model.` is accepted too)."""
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    config = _tower_config(state, "text")
    if not config.vocab:
        raise ClipError("no OpenCLIP text tower in the checkpoint (expected cond_stage_model.model.token_embedding.weight)")
    tower = _load(lambda: TextTower(config), state, "text encoder")
    return tower.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_vision_tower(state: dict, dtype=torch.float32, device="cpu") -> VisionTower:
    """From `embedder.*` weights (prefix stripped; `model.visual.` inside is accepted)."""
    state = {re.sub(r"^(model\.)?visual\.", "", k): v for k, v in state.items()}
    config = _tower_config(state, "vision")
    if not config.patch:
        raise ClipError("no OpenCLIP vision tower in the checkpoint (expected embedder.model.visual.conv1.weight)")
    tower = _load(lambda: VisionTower(config), state, "image encoder")
    return tower.to(device=device, dtype=dtype).eval().requires_grad_(False)


def tokenize(texts: list[str], context: int = 77) -> torch.Tensor:
    """OpenCLIP BPE tokens, padded with 0 and truncated to `context` (ending in the end token)."""
    from open_clip.tokenizer import tokenize as open_clip_tokenize

    return open_clip_tokenize(list(texts), context_length=context)
