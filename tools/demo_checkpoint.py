"""Write checkpoints in the real lvdm file layout with random weights: a tiny UNet3D (and
Resampler) plus full-size SD VAE, OpenCLIP ViT-H text tower and, optionally, the ViT-H/14
vision tower, so ComfyUI's own loaders accept them. Used by the host tests and by the main
job when no real checkpoint is present. The videos they render are noise: they prove the
pipeline, not the model.

No ComfyUI import: the layouts are written out here and checked against ComfyUI's own
classes by the host tests.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from univg_core.checkpoints import checkpoint_state_dict, save_checkpoint  # noqa: E402
from univg_core.configs import get_preset  # noqa: E402
from univg_core.mini import towers  # noqa: E402
from univg_core.models.image_proj import Resampler  # noqa: E402
from univg_core.models.unet3d import UNet3D  # noqa: E402

TEXT_WIDTH, VISION_WIDTH = towers.TEXT_WIDTH, towers.VISION_WIDTH


def demo_config(family: str):
    """The tiny preset of `family`, with the real context width (1024, the SD2 text encoder)
    and the real CLIP-vision token width (1280), so ComfyUI's encoders feed it."""
    config = get_preset(f"tiny_{family}")
    config = config.with_unet(context_dim=TEXT_WIDTH)
    if config.image_proj is not None:
        config = dataclasses.replace(
            config, image_proj=dataclasses.replace(config.image_proj, embedding_dim=VISION_WIDTH, output_dim=TEXT_WIDTH)
        )
    return config


def _fill(shapes: dict, generator: torch.Generator, dtype=torch.float16) -> dict:
    """Norm weights 1, biases 0, other weights uniform in +-0.03 (std ~0.017), made directly
    in fp16: these files are large and memory is slow to touch on small machines."""
    tensors = {}
    for name, shape in shapes.items():
        is_norm = "norm" in name or any(f"{ln}." in name for ln in ("ln_1", "ln_2", "ln_final", "ln_pre", "ln_post"))
        if is_norm and name.endswith("weight"):
            tensors[name] = torch.ones(shape, dtype=dtype)
        elif name.endswith("bias") or is_norm:
            tensors[name] = torch.zeros(shape, dtype=dtype)
        else:
            tensors[name] = _pattern(shape, generator, dtype)
    return tensors


_BLOCK = 1 << 20


def _pattern(shape, generator: torch.Generator, dtype) -> torch.Tensor:
    """A random 1M-value block tiled from a random offset: random enough for a demo
    checkpoint, and ~20x cheaper than drawing every value (CPU RNG runs ~30M values/s)."""
    block = torch.empty(2 * _BLOCK, dtype=dtype).uniform_(-0.03, 0.03, generator=generator)
    count = int(torch.Size(shape).numel())
    offset = int(torch.randint(0, _BLOCK, (1,), generator=generator))
    repeats = -(-(count + offset) // block.numel())
    return block.repeat(repeats)[offset : offset + count].view(shape)


def text_tower_shapes() -> dict:
    """`cond_stage_model.model.*`: OpenCLIP ViT-H/14's text transformer (SD2's text encoder)."""
    return towers.text_tower_shapes("cond_stage_model.model.")


def vision_tower_shapes() -> dict:
    """`embedder.model.visual.*`: OpenCLIP ViT-H/14's vision transformer."""
    return towers.vision_tower_shapes("embedder.model.visual.")


def _resnet(prefix: str, channels_in: int, channels_out: int) -> dict:
    shapes = {
        prefix + "norm1.weight": (channels_in,), prefix + "norm1.bias": (channels_in,),
        prefix + "conv1.weight": (channels_out, channels_in, 3, 3), prefix + "conv1.bias": (channels_out,),
        prefix + "norm2.weight": (channels_out,), prefix + "norm2.bias": (channels_out,),
        prefix + "conv2.weight": (channels_out, channels_out, 3, 3), prefix + "conv2.bias": (channels_out,),
    }
    if channels_in != channels_out:
        shapes.update({prefix + "nin_shortcut.weight": (channels_out, channels_in, 1, 1),
                       prefix + "nin_shortcut.bias": (channels_out,)})
    return shapes


def _mid(prefix: str, channels: int) -> dict:
    shapes = {**_resnet(prefix + "block_1.", channels, channels), **_resnet(prefix + "block_2.", channels, channels)}
    attn = prefix + "attn_1."
    shapes.update({attn + "norm.weight": (channels,), attn + "norm.bias": (channels,)})
    for name in ("q", "k", "v", "proj_out"):
        shapes.update({attn + name + ".weight": (channels, channels, 1, 1), attn + name + ".bias": (channels,)})
    return shapes


def vae_shapes(ch: int = 128, ch_mult=(1, 2, 4, 4), blocks: int = 2, z: int = 4) -> dict:
    """`first_stage_model.*`: the SD 1.x KL VAE (LDM Encoder/Decoder layout)."""
    shapes = {"encoder.conv_in.weight": (ch, 3, 3, 3), "encoder.conv_in.bias": (ch,)}
    channels_in = ch
    for level, mult in enumerate(ch_mult):
        channels_out = ch * mult
        for block in range(blocks):
            shapes.update(_resnet(f"encoder.down.{level}.block.{block}.", channels_in, channels_out))
            channels_in = channels_out
        if level != len(ch_mult) - 1:
            shapes.update({f"encoder.down.{level}.downsample.conv.weight": (channels_in, channels_in, 3, 3),
                           f"encoder.down.{level}.downsample.conv.bias": (channels_in,)})
    shapes.update(_mid("encoder.mid.", channels_in))
    shapes.update({"encoder.norm_out.weight": (channels_in,), "encoder.norm_out.bias": (channels_in,),
                   "encoder.conv_out.weight": (2 * z, channels_in, 3, 3), "encoder.conv_out.bias": (2 * z,)})
    channels_in = ch * ch_mult[-1]
    shapes.update({"decoder.conv_in.weight": (channels_in, z, 3, 3), "decoder.conv_in.bias": (channels_in,)})
    shapes.update(_mid("decoder.mid.", channels_in))
    for level in reversed(range(len(ch_mult))):
        channels_out = ch * ch_mult[level]
        for block in range(blocks + 1):
            shapes.update(_resnet(f"decoder.up.{level}.block.{block}.", channels_in, channels_out))
            channels_in = channels_out
        if level != 0:
            shapes.update({f"decoder.up.{level}.upsample.conv.weight": (channels_in, channels_in, 3, 3),
                           f"decoder.up.{level}.upsample.conv.bias": (channels_in,)})
    shapes.update({"decoder.norm_out.weight": (channels_in,), "decoder.norm_out.bias": (channels_in,),
                   "decoder.conv_out.weight": (3, channels_in, 3, 3), "decoder.conv_out.bias": (3,),
                   "quant_conv.weight": (2 * z, 2 * z, 1, 1), "quant_conv.bias": (2 * z,),
                   "post_quant_conv.weight": (z, z, 1, 1), "post_quant_conv.bias": (z,)})
    return {"first_stage_model." + key: shape for key, shape in shapes.items()}


def write_demo_checkpoint(path: str, family: str = "videocrafter2_t2v_512", seed: int = 0, vision: bool | None = None,
                          full_size: bool = False):
    """Write `path` (.safetensors with UniVG metadata, or .ckpt in the original pickle layout);
    full_size: the family's real UNet and Resampler, not the tiny ones (gpu_check's render)."""
    config = get_preset(family) if full_size else demo_config(family)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet = UNet3D(config.unet)
    with torch.no_grad():  # give the zero-initialised output layers weights, so the output is not trivially 0
        for name, parameter in unet.named_parameters():
            if parameter.ndim >= 2 and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    image_proj = Resampler(config.image_proj) if config.image_proj is not None else None
    shapes = {**vae_shapes(), **text_tower_shapes()}
    if vision if vision is not None else config.image_proj is not None:
        shapes.update(vision_tower_shapes())
    extra_tensors = _fill(shapes, generator)
    extra: dict[str, dict] = {"": extra_tensors}
    if path.endswith(".safetensors"):
        save_checkpoint(path, config, unet, image_proj, extra=extra, metadata={"univg.demo": "random weights"})
    else:
        torch.save({"state_dict": checkpoint_state_dict(unet, image_proj, extra)}, path)
    return config


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--family", default="videocrafter2_t2v_512")
    args = parser.parse_args()
    write_demo_checkpoint(args.path, args.family)
    print(args.path)
