"""gpu_check's ComfyUI part: the animation workflow rendered by a ComfyUI server started with
`--lowvram`, on a DynamiCrafter-512-sized checkpoint of random weights (16 frames at 320x512,
25 steps by default), reporting seconds per step and the most VRAM the server held.

    python -m tools.gpu_check_server [--out gpu_check_comfyui.json] [--steps 25]
    python -m tools.gpu_check_server --cpu --tiny     # the same path on the CPU at 4 frames of 64x64

A checkout of the repository with its host (scripts/build_host.sh) is needed: this starts the
project's ComfyUI. The VRAM is read from the server's /system_stats while the prompt runs
(total minus the least free seen: every process on the GPU counts), so run it on an idle GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from .comfy_host import ROOT, Server, get_json, output_files, prepare_base, queue_prompt, status_of, wait_for
from .demo_checkpoint import write_demo_checkpoint
from .main_job import example_image

FAMILY = "dynamicrafter_512"


def animation_prompt(checkpoint: str, image: str, frames: int, height: int, width: int, steps: int) -> dict:
    api = json.loads((ROOT / "workflows" / "api" / "animation.json").read_text())
    nodes = {node["class_type"]: node for node in api.values()}
    nodes["UniVGCheckpointLoader"]["inputs"]["ckpt_name"] = checkpoint
    nodes["LoadImage"]["inputs"]["image"] = image
    nodes["ImageScale"]["inputs"].update(width=width, height=height)
    nodes["UniVGAnimationSampler"]["inputs"].update(frames=frames, steps=steps, seed=0)
    nodes["SaveVideo"]["inputs"]["filename_prefix"] = "univg/gpu_check"
    return api


class VramWatcher:
    """Polls /system_stats in the background: the least free VRAM seen on the first device."""

    def __init__(self, url: str, every: float = 0.25):
        self.url, self.every = url, every
        self.total = self.least_free = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                device = get_json(self.url, "/system_stats", timeout=5)["devices"][0]
                self.total = device["vram_total"]
                free = device["vram_free"]
                self.least_free = free if self.least_free is None else min(self.least_free, free)
            except (OSError, KeyError, IndexError, ValueError):
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> "VramWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peak_gib(self):
        if self.total is None or self.least_free is None:
            return None
        return (self.total - self.least_free) / 2**30


def run(cpu: bool, tiny: bool, steps: int, work: Path, given: Path | None = None) -> dict:
    base = prepare_base(work / "base")
    if given is not None:  # an animation checkpoint the caller has (e.g. a real DynamiCrafter file)
        checkpoint = given.name
        (base / "models" / "univg" / checkpoint).symlink_to(given.resolve())
    else:
        checkpoint = "gpu_check_dynamicrafter_512.safetensors"
        write_demo_checkpoint(str(base / "models" / "univg" / checkpoint), FAMILY, full_size=not tiny)
    example_image(base / "input" / "gpu_check.png")
    frames, height, width = (4, 64, 64) if tiny else (16, 320, 512)
    api = animation_prompt(checkpoint, "gpu_check.png", frames, height, width, steps)
    arguments = ("--lowvram",) if not cpu else ()
    with Server(base, log_path=work / "comfyui.log", extra_args=arguments, cpu=cpu) as server:
        with VramWatcher(server.url) as vram:
            start = time.perf_counter()
            entry = wait_for(server.url, queue_prompt(server.url, api), timeout=3600)
            seconds = time.perf_counter() - start
        status, message = status_of(entry)
        log_tail = server.log_tail(60)
    videos = [path for path in output_files(entry, base / "output") if path.exists()]
    return {
        "server": "--cpu" if cpu else "--lowvram",
        "checkpoint": checkpoint if given else ("tiny" if tiny else "DynamiCrafter-512 size, random weights"),
        "frames_height_width": [frames, height, width], "steps": steps, "status": status, "message": message,
        "seconds_whole_prompt": round(seconds, 2), "seconds_per_step_upper_bound": round(seconds / steps, 3),
        "peak_vram_gib": None if cpu else vram.peak_gib(), "video_written": bool(videos),
        "log_tail": log_tail if status != "success" else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check_comfyui.json"))
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cpu", action="store_true", help="start the server with --cpu (no --lowvram)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model at 4 frames of 64x64")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="render this animation checkpoint instead of writing one of random weights")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="univg_gpu_check_") as folder:
        report = run(args.cpu, args.tiny, args.steps, Path(folder), args.checkpoint)
    args.out.write_text(json.dumps(report, indent=2))
    vram = f", peak VRAM {report['peak_vram_gib']:.2f} GiB" if report["peak_vram_gib"] is not None else ""
    print(f"ComfyUI {report['server']}, {report['checkpoint']} {report['frames_height_width']}, {report['steps']} "
          f"steps: {report['status']} {report['message']}, {report['seconds_whole_prompt']:.1f} s in all "
          f"(at most {report['seconds_per_step_upper_bound']:.2f} s a step){vram}; wrote {args.out}")
    return 0 if report["status"] == "success" and report["video_written"] else 1


if __name__ == "__main__":
    sys.exit(main())
