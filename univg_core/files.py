"""Writing a file so that nobody ever reads half of it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` into PATH.partial, then rename it over `path` (its folder is made). A
    write that fails (a full disk, an interrupt) leaves `path` as it was and no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        write(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def existing_parent(path: str | Path) -> Path:
    """`path`, or its nearest folder that exists (where a file about to be written will land)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
