"""Fine-tune UniVG's models from an open checkpoint with Biased Gaussian Noise.

    python -m univg_core.cli.train --task animation --init base.safetensors --data clips/ --out animation.safetensors
    torchrun --nproc_per_node 8 -m univg_core.cli.train --task sr ...      # several GPUs (DDP; --fsdp to shard)

Exit status: 0 done, 2 bad input (options, data, init checkpoint), 1 a failure while training
(the state file next to --out keeps every finished step; run the same command to resume)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..checkpoints import CheckpointError
from ..training.data import DataError
from ..training.distributed import process_rank
from ..training.model_setup import TrainingSetupError
from ..training.trainer import TrainOptions, train


_TYPES = {"int": int, "float": float, "str": str}


def _add_option(parser: argparse.ArgumentParser, option: dataclasses.Field) -> None:
    """One flag for a TrainOptions field: its name with dashes (or the field's own flag),
    --no-NAME for a setting that is on by default, its help and choices from the field."""
    name = option.name.replace("_", "-")
    help_text = option.metadata.get("help")
    required = option.default is dataclasses.MISSING
    if option.type == "bool":
        flag = f"--no-{name}" if option.default else f"--{name}"
        parser.add_argument(flag, dest=option.name, action="store_false" if option.default else "store_true", help=help_text)
        return
    kind = _TYPES[option.type.removeprefix("Optional[").removesuffix("]")]
    default_help = "" if required or option.default is None else f" (default {option.default})"
    parser.add_argument(
        option.metadata.get("flag", f"--{name}"), dest=option.name, type=kind, required=required,
        default=None if required else option.default, choices=option.metadata.get("choices"),
        help=(help_text or "") + default_help,
    )


def parse(argv=None) -> TrainOptions:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.train", description=__doc__.split("\n\n")[0])
    for option in dataclasses.fields(TrainOptions):
        _add_option(parser, option)
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
