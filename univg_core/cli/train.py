"""Fine-tune UniVG's models from an open checkpoint with Biased Gaussian Noise.

    python -m univg_core.cli.train --task animation --init base.safetensors --data clips/ --out animation.safetensors
    torchrun --nproc_per_node 8 -m univg_core.cli.train --task sr ...      # several GPUs (DDP; --fsdp to shard)

Exit status: 0 done, 2 bad input (options, data, init checkpoint), 1 a failure while training
(the state file next to --out keeps every finished step; run the same command to resume)."""

from __future__ import annotations

import argparse
import sys

from ..checkpoints import CheckpointError
from ..training.data import DataError
from ..training.distributed import process_rank
from ..training.model_setup import TrainingSetupError
from ..training.objective import TASKS
from ..training.trainer import SAVE_DTYPES, TrainOptions, train


def parse(argv=None) -> TrainOptions:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--init", required=True, help="checkpoint to start from (.ckpt or .safetensors, with its VAE and CLIP)")
    parser.add_argument("--data", required=True, help="folder of clips (mp4/webm/...) with <clip>.txt captions or captions.csv")
    parser.add_argument("--out", required=True, help="the .safetensors to write (its resumable state goes to OUT.state.pt)")
    parser.add_argument("--frames", type=int, default=16, help="frames per training clip (8-24 typical)")
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=1, help="clips per process per micro-step")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps in total (a resumed run counts on)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--t-m", type=int, default=None, help="BGN window start (animation 600, sr 0)")
    parser.add_argument("--t-n", type=int, default=None, help="BGN window end (animation 990, sr 700)")
    parser.add_argument("--offset-noise", type=float, default=0.1)
    parser.add_argument("--zero-terminal-snr", action="store_true")
    parser.add_argument("--text-dropout", type=float, default=None, help="default: base 0.5, animation 0.1, sr 0.1")
    parser.add_argument("--image-dropout", type=float, default=None, help="default: base 0.1, animation 0.1")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    parser.add_argument("--dropout", type=float, default=None,
                        help="the network's dropout rate (default: its own, 0.1 in the temporal convolutions)")
    parser.add_argument("--ema", dest="ema_decay", type=float, default=None, help="EMA decay (e.g. 0.9999); the output holds the EMA")
    parser.add_argument("--fs", type=int, default=None, help="fps / frame-stride condition (default: the model's)")
    parser.add_argument("--cache-dir", default=None, help="encoded clips (default DATA/.univg_cache)")
    parser.add_argument("--max-frames", type=int, default=64, help="frames decoded per clip")
    parser.add_argument("--frame-stride", type=int, default=1)
    parser.add_argument("--window-stride", type=int, default=4, help="frames between possible window starts")
    parser.add_argument("--save-every", type=int, default=500, help="steps between resumable state saves")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="ignore an existing OUT.state.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-dtype", choices=sorted(SAVE_DTYPES), default="fp16")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--fsdp", action="store_true", help="shard the model across processes (FSDP) instead of DDP")
    parser.add_argument("--log-every", type=int, default=10)
    return TrainOptions(**vars(parser.parse_args(argv)))


def main(argv=None) -> int:
    options = parse(argv)
    try:
        out = train(options)
    except (TrainingSetupError, DataError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if process_rank() == 0:  # under torchrun every rank returns the same path
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
