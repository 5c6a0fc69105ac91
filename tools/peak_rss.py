"""Run one command, then say how long it took and the peak memory of the largest process it
started (itself or any process under it that was waited for), and fail past a limit.

    python -m tools.peak_rss --label suite --limit-gib 12 --summary .cache/ci_summary.txt -- CMD ...

Exit status: the command's own if it failed; 3 if it passed but a process went over the limit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

GIB = 1024**3


def run_measured(command: list[str]) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak resident bytes of the largest process in its tree)."""
    started = time.monotonic()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss * 1024


def verdict(label: str, code: int, seconds: float, peak: int, limit_gib: float) -> tuple[str, int]:
    line = f"{label}: exit {code}, {seconds / 60:.1f} min, peak memory {peak / GIB:.2f} GiB (limit {limit_gib:g} GiB)"
    if code != 0:
        return line, code
    if peak > limit_gib * GIB:
        return line + f"  FAILED: a process of '{label}' peaked at {peak / GIB:.2f} GiB, over {limit_gib:g} GiB", 3
    return line, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.peak_rss", description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--limit-gib", type=float, default=12.0)
    parser.add_argument("--summary", type=Path, help="append the result line to this file")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    code, seconds, peak = run_measured(args.command)
    line, status = verdict(args.label, code, seconds, peak, args.limit_gib)
    print(line, flush=True)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        with args.summary.open("a") as summary:
            summary.write(line + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
