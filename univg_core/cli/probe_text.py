"""Probe what a UniVG Mini F_B reads, on held-out clips, without sampling: its v-loss with the
right caption, with the motion word swapped for the opposite one, with another colour and with
the empty prompt, and how much its output moves when the frames come reversed or with
neighbours traded.

    python -m univg_core.cli.probe_text                                   # the shipped F_B
    python -m univg_core.cli.probe_text --model .cache/mini/runs/univg_mini_base.safetensors

About 2 minutes on a 2-core CPU for 48 clips."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..checkpoints import CheckpointError, load_checkpoint
from ..diffusion.guidance import unet_model_fn
from ..diffusion.schedule import alphas_cumprod_for
from ..evaluation import probes
from ..evaluation.studies import held_out_specs
from ..mini import models, towers
from ..mini.render import MiniRenderer, to_pixels
from ..mini.world import render
from ..training.clip_towers import tokenize
from .install_mini import WEIGHTS

ROOT = Path(__file__).resolve().parents[2]
LOSS_TIMESTEPS = (300, 600, 800, 950)
ORDER_TIMESTEPS = (300, 600, 900)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.probe_text", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=WEIGHTS / models.BASE_FILE, help="an F_B file")
    parser.add_argument("--clips", type=int, default=48, help="held-out clips")
    parser.add_argument("--towers", type=Path, default=ROOT / ".cache" / "mini" / "towers",
                        help="the fixed random towers (rebuilt here from their seed when missing)")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error(f"--clips must be at least 1, got {args.clips}")
    try:
        model = load_checkpoint(args.model, dtype=torch.float32, device="cpu")
    except (FileNotFoundError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if model.config.unet.in_channels != 4:
        print(f"error: {args.model} is not a text-to-video F_B ({model.config.unet.in_channels} input channels)",
              file=sys.stderr)
        return 2
    text_file, _ = towers.write_towers(args.towers, args.towers)
    renderer = MiniRenderer(text_file, WEIGHTS / models.VAE_FILE)
    specs = held_out_specs(args.clips)
    with torch.no_grad():
        latents = torch.stack([renderer.encode(model, to_pixels(render(spec, models.SIZE))).transpose(0, 1)
                               for spec in specs])
        captions = {
            "right caption": [spec.caption for spec in specs],
            "opposite motion": [probes.opposite_motion_caption(spec) for spec in specs],
            "other colour": [probes.other_colour_caption(spec) for spec in specs],
            "empty prompt": ["" for _ in specs],
        }
        contexts = {name: renderer.text(tokenize(texts)) for name, texts in captions.items()}  # one batch each
    unet = unet_model_fn(model.unet, fs=model.config.unet.default_fs)

    def text_only(x, t, context):
        return unet(x, t, context, None)

    alphas_cumprod = alphas_cumprod_for(model.config.schedule)
    print(f"{args.model} on {len(specs)} held-out clips\n")
    print("| t | " + " | ".join(contexts) + " |")
    print("|---" * (len(contexts) + 1) + "|")
    for timestep in LOSS_TIMESTEPS:
        losses = probes.v_losses(text_only, latents, contexts, timestep, alphas_cumprod, seed=timestep)
        print(f"| {timestep} | " + " | ".join(f"{losses[name]:.4f}" for name in contexts) + " |")
    frames = latents.shape[2]
    orders = {"reversed": probes.reversed_order(frames), "neighbours traded": probes.adjacent_pairs_swapped(frames)}
    print("\n| t | output change, frames " + " | frames ".join(orders) + " |")
    print("|---" * (len(orders) + 1) + "|")
    for timestep in ORDER_TIMESTEPS:
        changes = probes.frame_order_sensitivity(text_only, latents, contexts["right caption"], timestep,
                                                 alphas_cumprod, orders, seed=timestep)
        print(f"| {timestep} | " + " | ".join(f"{changes[name]:.2%}" for name in orders) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
