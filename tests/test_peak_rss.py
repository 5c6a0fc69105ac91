"""tools/peak_rss.py: the memory of processes running side by side is counted together."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOLD = "import sys, time; block = bytearray(int(sys.argv[1]) * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(6)"


def _measure(limit_gib: float) -> tuple[int, float, float]:
    two_at_once = f"{sys.executable} -c \"{HOLD}\" 200 & {sys.executable} -c \"{HOLD}\" 250; wait"
    result = subprocess.run([sys.executable, "-m", "tools.peak_rss", "--label", "two", "--limit-gib", str(limit_gib),
                             "--", "bash", "-c", two_at_once], cwd=ROOT, capture_output=True, text=True, timeout=60)
    found = re.search(r"peak memory ([\d.]+) GiB all processes together, ([\d.]+) GiB the largest", result.stdout)
    assert found, result.stdout + result.stderr
    return result.returncode, float(found[1]), float(found[2])


def test_two_processes_at_once_are_measured_together_and_the_limit_applies_to_their_sum():
    code, together, largest = _measure(limit_gib=12)
    assert code == 0
    assert 0.2 < largest < 0.3  # the 250 MiB process
    assert together > 0.42  # both blocks at once (450 MiB), each interpreter's own pages on top
    code, _, _ = _measure(limit_gib=0.4)  # each process alone is under it, the two together are not
    assert code == 3
