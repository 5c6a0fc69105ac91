"""Writing a file so that nobody ever reads half of it."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` into PATH.PID.partial, then rename it over `path` (its folder is made). A
    write that fails (a full disk, an interrupt) leaves `path` as it was and no partial file; the
    partial files of processes that have ended (killed mid-write) are removed. Processes writing
    the same path at once each write their own partial file, and the last rename wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_partials(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def _remove_abandoned_partials(path: Path) -> None:
    for partial in path.parent.glob(f"{glob.escape(path.name)}.*partial"):
        writer = partial.name[len(path.name) + 1:-len("partial")].rstrip(".")  # "" for the old PATH.partial
        if writer == "" or (writer.isdigit() and not _process_alive(int(writer))):
            partial.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def existing_parent(path: str | Path) -> Path:
    """`path`, or its nearest folder that exists (where a file about to be written will land)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def file_identity(path: str | Path) -> tuple:
    """What tells a file apart from its earlier versions without reading it: where it is, its
    inode, size and modification time (a rewrite through `write_atomically` is a new inode)."""
    path = Path(path)
    stat = path.stat()
    return str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class ReadOnce:
    """`value(paths, compute)`: `compute()` once per process for the same files unchanged, by
    `file_identity` (a file that cannot be stat'ed is computed every time)."""

    def __init__(self):
        self._values: dict[tuple, object] = {}

    def value(self, paths, compute: Callable[[], object], *extra) -> object:
        try:
            key = (*(file_identity(path) for path in paths), *extra)
        except OSError:
            return compute()
        if key not in self._values:
            self._values[key] = compute()
        return self._values[key]
