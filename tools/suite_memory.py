"""Where the test suite's memory and time go, per test file and per test.

As a pytest plugin (`-p tools.suite_memory`, with UNIVG_SUITE_MEMORY=path.json) it records,
after every test, the seconds it took, the process's resident set then (what it still holds)
and its peak resident set so far (ru_maxrss), and writes them to that file at the end.
As a command it turns such files into the table docs/developing.md shows:

    .venv/bin/python -m tools.suite_memory report .cache/suite_memory/*.json

Peaks in one process only grow, so a file's "peak rise" is how far the process's peak went
up while that file ran: the files with a large rise are where the suite's peak comes from.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import OrderedDict
from pathlib import Path

GIB = 1024**3


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    """The largest resident set so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(who).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ the plugin

_records: list[dict] = []
_started: dict[str, float] = {}


def pytest_runtest_logstart(nodeid, location):
    _started[nodeid] = time.perf_counter()


def pytest_runtest_logfinish(nodeid, location):
    _records.append({
        "test": nodeid,
        "seconds": round(time.perf_counter() - _started.pop(nodeid, time.perf_counter()), 3),
        "rss": current_rss_bytes(),
        "peak": peak_rss_bytes(),
    })


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("UNIVG_SUITE_MEMORY")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps({"start_peak": _start_peak, "tests": _records}, indent=0))


_start_peak = peak_rss_bytes()


# ------------------------------------------------------------------ the report

def per_file(records: list[dict], start_peak: int) -> "OrderedDict[str, dict]":
    """test file -> seconds, peak rise while it ran, peak and resident set after it."""
    files: OrderedDict[str, dict] = OrderedDict()
    previous_peak = start_peak
    for record in records:
        name = record["test"].split("::")[0]
        entry = files.setdefault(name, {"seconds": 0.0, "rise": 0, "peak": 0, "rss": 0, "tests": 0})
        entry["seconds"] += record["seconds"]
        entry["rise"] += max(0, record["peak"] - previous_peak)
        entry["peak"], entry["rss"] = record["peak"], record["rss"]
        entry["tests"] += 1
        previous_peak = record["peak"]
    return files


def table(paths: list[Path], slowest: int = 10) -> str:
    lines = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        records = data["tests"]
        files = per_file(records, data["start_peak"])
        total = sum(entry["seconds"] for entry in files.values())
        peak = max((r["peak"] for r in records), default=0)
        lines += [f"### {Path(path).stem}: {len(records)} tests, {total / 60:.1f} min, peak {peak / GIB:.2f} GiB", "",
                  "| test file | tests | seconds | peak rise (GiB) | peak after (GiB) | resident after (GiB) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, entry in files.items():
            lines.append(f"| {name} | {entry['tests']} | {entry['seconds']:.0f} | {entry['rise'] / GIB:.2f} | "
                         f"{entry['peak'] / GIB:.2f} | {entry['rss'] / GIB:.2f} |")
        lines += ["", f"slowest {slowest}:", ""]
        for record in sorted(records, key=lambda r: -r["seconds"])[:slowest]:
            lines.append(f"- {record['seconds']:.0f} s {record['test']}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.suite_memory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="per-file table of recorded runs")
    report.add_argument("files", nargs="+", type=Path)
    report.add_argument("--slowest", type=int, default=10)
    args = parser.parse_args(argv)
    print(table(args.files, args.slowest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
