"""Build every Triton attention kernel variant for sm_80 and sm_90 ahead of time, on any
machine (no GPU needed): code that only the GPU compiler rejects fails here.

    python -m univg_core.cli.build_kernels [--arch 90]
"""

from __future__ import annotations

import argparse
import sys

from ..models.kernels.aot import ARCHES, compile_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m univg_core.cli.build_kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, action="append", help="compute capability x10 (default: 80 and 90)")
    args = parser.parse_args(argv)
    results = compile_all(tuple(args.arch or ARCHES))
    print(f"{len(results)} kernels compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
