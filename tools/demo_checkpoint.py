"""Write checkpoints in the real lvdm file layout with random weights: a tiny UNet3D (and
Resampler) plus full-size SD VAE, OpenCLIP ViT-H text tower and, optionally, the ViT-H/14
vision tower, so ComfyUI's own loaders accept them. Used by the host tests and by the main
job when no real checkpoint is present. The videos they render are noise: they prove the
pipeline, not the model.

Runs inside the host's environment (it builds the VAE layout with ComfyUI's own classes).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from univg_core.checkpoint import checkpoint_state_dict, save_checkpoint  # noqa: E402
from univg_core.configs import get_preset  # noqa: E402
from univg_core.image_proj import Resampler  # noqa: E402
from univg_core.unet3d import UNet3D  # noqa: E402

TEXT_WIDTH, TEXT_LAYERS, VOCAB = 1024, 24, 49408
VISION_WIDTH, VISION_LAYERS, PATCH, TOKENS = 1280, 32, 14, 257


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
    tensors = {}
    for name, shape in shapes.items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_final.weight", "ln_pre.weight", "ln_post.weight")) or (
            "norm" in name and name.endswith("weight")
        ):
            tensor = torch.ones(shape)
        elif name.endswith("bias") or "norm" in name:
            tensor = torch.zeros(shape)
        else:
            tensor = torch.randn(shape, generator=generator) * 0.02
        tensors[name] = tensor.to(dtype)
    return tensors


def _open_clip_blocks(prefix: str, width: int, layers: int) -> dict:
    shapes = {}
    for i in range(layers):
        block = f"{prefix}transformer.resblocks.{i}."
        shapes.update({
            block + "ln_1.weight": (width,), block + "ln_1.bias": (width,),
            block + "attn.in_proj_weight": (3 * width, width), block + "attn.in_proj_bias": (3 * width,),
            block + "attn.out_proj.weight": (width, width), block + "attn.out_proj.bias": (width,),
            block + "ln_2.weight": (width,), block + "ln_2.bias": (width,),
            block + "mlp.c_fc.weight": (4 * width, width), block + "mlp.c_fc.bias": (4 * width,),
            block + "mlp.c_proj.weight": (width, 4 * width), block + "mlp.c_proj.bias": (width,),
        })
    return shapes


def text_tower_shapes() -> dict:
    """`cond_stage_model.model.*`: OpenCLIP ViT-H/14's text transformer (SD2's text encoder)."""
    prefix = "cond_stage_model.model."
    shapes = _open_clip_blocks(prefix, TEXT_WIDTH, TEXT_LAYERS)
    shapes.update({
        prefix + "positional_embedding": (77, TEXT_WIDTH),
        prefix + "token_embedding.weight": (VOCAB, TEXT_WIDTH),
        prefix + "ln_final.weight": (TEXT_WIDTH,), prefix + "ln_final.bias": (TEXT_WIDTH,),
        prefix + "text_projection": (TEXT_WIDTH, TEXT_WIDTH),
    })
    return shapes


def vision_tower_shapes() -> dict:
    """`embedder.model.visual.*`: OpenCLIP ViT-H/14's vision transformer."""
    prefix = "embedder.model.visual."
    shapes = _open_clip_blocks(prefix, VISION_WIDTH, VISION_LAYERS)
    shapes.update({
        prefix + "class_embedding": (VISION_WIDTH,),
        prefix + "positional_embedding": (TOKENS, VISION_WIDTH),
        prefix + "conv1.weight": (VISION_WIDTH, 3, PATCH, PATCH),
        prefix + "ln_pre.weight": (VISION_WIDTH,), prefix + "ln_pre.bias": (VISION_WIDTH,),
        prefix + "ln_post.weight": (VISION_WIDTH,), prefix + "ln_post.bias": (VISION_WIDTH,),
        prefix + "proj": (VISION_WIDTH, 1024),
    })
    return shapes


def vae_shapes() -> dict:
    """`first_stage_model.*`: the SD 1.x KL VAE, its layout taken from ComfyUI's own class."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    with torch.device("meta"):
        vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    return {"first_stage_model." + k: tuple(v.shape) for k, v in vae.state_dict().items()}


def write_demo_checkpoint(path: str, family: str = "videocrafter2_t2v_512", seed: int = 0, vision: bool | None = None):
    """Write `path` (.safetensors with UniVG metadata, or .ckpt in the original pickle layout)."""
    config = demo_config(family)
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
