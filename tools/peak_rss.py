"""Run one command, then say how long it took and its peak memory, and fail past a limit.

    python -m tools.peak_rss --label suite --limit-gib 12 --summary .cache/ci_summary.txt -- CMD ...

Two peaks are measured: all the command's processes together (the sum of their proportional set
sizes, sampled every two seconds: what a machine must hold when a command runs processes side by side,
a page that processes share split between them) and the largest single process (the kernel's own
high-water mark, which sampling cannot miss). The limit applies to the larger of the two.

Exit status: the command's own if it failed; 3 if it passed but went over the limit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

GIB = 1024**3
SAMPLE_SECONDS = 2.0
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def process_tree(root: int) -> list[int]:
    """`root` and every process under it that is alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def proportional_bytes(pid: int) -> int:
    """The process's proportional set size: its private pages and its share of shared ones (its
    resident set where the kernel has no smaps_rollup)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    except (OSError, ValueError, IndexError):  # it ended while we looked
        return 0
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


class TreeMemory:
    """Samples the total proportional memory of a process tree in a thread until stopped."""

    def __init__(self, root: int, interval: float = SAMPLE_SECONDS):
        self.root, self.interval, self.peak = root, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(proportional_bytes(pid) for pid in process_tree(self.root)))
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(command: list[str]) -> tuple[int, float, int, int]:
    """(exit status, wall seconds, peak of all its processes together, peak resident bytes of the
    largest process in its tree)."""
    started = time.monotonic()
    process = subprocess.Popen(command)
    with TreeMemory(process.pid) as together:
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    return os.waitstatus_to_exitcode(status), seconds, together.peak, usage.ru_maxrss * 1024


def verdict(label: str, code: int, seconds: float, together: int, largest: int, limit_gib: float) -> tuple[str, int]:
    line = (f"{label}: exit {code}, {seconds / 60:.1f} min, peak memory {together / GIB:.2f} GiB all processes "
            f"together, {largest / GIB:.2f} GiB the largest (limit {limit_gib:g} GiB)")
    if code != 0:
        return line, code
    peak = max(together, largest)
    if peak > limit_gib * GIB:
        return line + f"  FAILED: '{label}' peaked at {peak / GIB:.2f} GiB, over {limit_gib:g} GiB", 3
    return line, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.peak_rss", description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--limit-gib", type=float, default=12.0)
    parser.add_argument("--summary", type=Path, help="append the result line to this file")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    code, seconds, together, largest = run_measured(args.command)
    line, status = verdict(args.label, code, seconds, together, largest, args.limit_gib)
    print(line, flush=True)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        with args.summary.open("a") as summary:
            summary.write(line + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
