"""Training and held-out sets of the world in the layout `python -m univg_core.cli.train`
reads: lossless clips (FFV1 in .mkv), a captions.csv, and truth.jsonl with every clip's
ground truth (shape, colour, background, motion, per-frame centres and radii)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .world import ClipSpec, make_specs, render

CAPTIONS = "captions.csv"
TRUTH = "truth.jsonl"


def write_clip(frames: np.ndarray, path: Path, fps: int = 8) -> None:
    """uint8 frames [T, H, W, 3] -> a lossless FFV1 video."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_dataset(folder: str | Path, count: int, seed: int, frames: int = 16, size: int = 64, fps: int = 8,
                  log=print, textured: bool = False) -> list[ClipSpec]:
    """`count` clips of `frames` frames at size x size into `folder` (textured: with the world's
    pixel patterns, at twice the base size); returns their specs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = make_specs(count, seed, frames)
    with open(folder / CAPTIONS, "w", newline="") as captions, open(folder / TRUTH, "w") as truth:
        writer = csv.writer(captions)
        writer.writerow(["file", "caption"])
        for spec in specs:
            name = f"clip_{spec.index:05d}.mkv"
            write_clip(render(spec, size, textured), folder / name, fps)
            writer.writerow([name, spec.caption])
            truth.write(json.dumps({"file": name, **spec.to_json()}) + "\n")
            if log and (spec.index + 1) % 100 == 0:
                log(f"{spec.index + 1}/{count} clips")
    return specs


def read_truth(folder: str | Path) -> list[dict]:
    with open(Path(folder) / TRUTH) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def set_mismatch(folder: str | Path, frames: int, count: int | None = None) -> str | None:
    """What makes an existing set in `folder` other than one of `count` clips of `frames` frames,
    or None. (A 16-frame set, `make_world`'s default, trains in 8-frame windows that show half of
    each path: not the clips UniVG Mini is trained and tested on.)"""
    truth = read_truth(folder)
    lengths = sorted({len(clip["centres"]) for clip in truth})
    if lengths != [frames]:
        return f"{folder} holds clips of {', '.join(map(str, lengths)) or 'no'} frames, not {frames}"
    if count is not None and len(truth) != count:
        return f"{folder} holds {len(truth)} clips, not {count}"
    return None
