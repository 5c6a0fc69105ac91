"""A folder of video clips with captions: discovery, validation and decoding (PyAV).

Captions come from a sidecar `<clip>.txt` next to each clip, or from a `captions.csv` in the
folder with the columns `file,caption` (the CSV wins where both exist)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")
CAPTIONS_CSV = "captions.csv"


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class ClipRecord:
    path: Path
    caption: str


def _csv_captions(folder: Path) -> dict[str, str]:
    table = folder / CAPTIONS_CSV
    if not table.is_file():
        return {}
    with open(table, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
            raise DataError(f"{table}: expected a header with the columns 'file' and 'caption', got {reader.fieldnames}")
        return {row["file"].strip(): (row["caption"] or "").strip() for row in reader}


def find_clips(folder: str | Path) -> list[ClipRecord]:
    """Every video under `folder` (recursively, sorted) with its caption; an error listing the
    clips without a caption if any lack one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder")
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise DataError(f"data folder {folder} holds no video clips (looked for {', '.join(VIDEO_SUFFIXES)})")
    from_csv = _csv_captions(folder)
    records, missing = [], []
    for video in videos:
        relative = video.relative_to(folder).as_posix()
        caption = from_csv.get(relative)
        sidecar = video.with_suffix(".txt")
        if caption is None and sidecar.is_file():
            caption = sidecar.read_text(encoding="utf-8").strip()
        if caption is None:
            missing.append(relative)
        else:
            records.append(ClipRecord(video, caption))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} clip(s) in {folder} have no caption: {shown}; add a sidecar <clip>.txt or a row in "
            f"{CAPTIONS_CSV} (columns file,caption)"
        )
    return records


def resize_and_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[T, 3, H, W] -> [T, 3, height, width]: scale so the frame covers the target, then centre-crop."""
    _, _, h, w = frames.shape
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    if size != (h, w):
        frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return frames[:, :, top : top + height, left : left + width]


def read_video(path: str | Path, height: int, width: int, max_frames: int, stride: int = 1) -> tuple[torch.Tensor, float]:
    """Decode up to `max_frames` frames (every `stride`-th) as [T, 3, height, width] in [-1, 1],
    and the frame rate of what is returned."""
    import av

    path = Path(path)
    frames, rate = [], 0.0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0) / stride
            for index, frame in enumerate(container.decode(stream)):
                if index % stride:
                    continue
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
                if len(frames) >= max_frames:
                    break
    except DataError:
        raise
    except Exception as error:  # PyAV raises its own error types for every kind of broken file
        raise DataError(f"{path}: cannot decode the video: {error}") from None
    if not frames:
        raise DataError(f"{path}: the video has no frames")
    video = torch.stack(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return resize_and_crop(video, height, width).clamp(-1, 1), rate
