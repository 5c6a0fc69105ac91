"""Write a set of the miniature's procedural world: clips of one shape of one colour moving
over a flat background, captions, and the ground truth of every clip.

    python -m univg_core.cli.make_world --out data/world_train --clips 2000 --seed 0
    python -m univg_core.cli.make_world --out data/world_heldout --clips 200 --seed 1000
"""

from __future__ import annotations

import argparse
import sys

from ..mini.dataset import write_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.make_world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write (clips, captions.csv, truth.jsonl)")
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="held-out sets take other seeds")
    parser.add_argument("--frames", type=int, default=16,
                        help="frames a clip (UniVG Mini's sets, which train_mini writes itself, have 8)")
    parser.add_argument("--size", type=int, default=64, help="pixels (square frames)")
    parser.add_argument("--fps", type=int, default=8)
    args = parser.parse_args(argv)
    if args.clips < 1 or args.frames < 2 or args.size < 16:
        parser.error("need --clips >= 1, --frames >= 2 and --size >= 16")
    write_dataset(args.out, args.clips, args.seed, args.frames, args.size, args.fps)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
