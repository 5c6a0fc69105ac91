"""Regenerate the drag-in UI-format workflows in example_workflows/ (ComfyUI's Templates menu
lists that folder) from their API-format twins in workflows/api/, with the host's node
definitions: each workflow as bundled (NAME.json, the checkpoint names of its role) and set up
for UniVG Mini (univg_mini_NAME.json). `--thumbnails` also renders every Mini variant on the
host and writes a same-name .jpg beside each file (frames 0, 2, 4 and 6 of its video).

    .venv/bin/python -m tools.make_ui_workflows [--thumbnails [--only NAME,...]]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from .comfy_host import ROOT, prepare_base
from .mini_workflows import apply_mini
from .workflow_format import api_to_ui, object_info_from_classes

API = ROOT / "workflows" / "api"
EXAMPLES = ROOT / "example_workflows"
MINI_PREFIX = "univg_mini_"
THUMBNAIL_FRAMES = (0, 2, 4, 6)


def variants() -> list[tuple[str, dict]]:
    """(file stem, API workflow) of every example: the bundled one and its Mini variant."""
    out = []
    for path in sorted(API.glob("*.json")):
        api = json.loads(path.read_text())
        out += [(path.stem, api), (MINI_PREFIX + path.stem, apply_mini(api, path.stem))]
    return out


def thumbnail(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> a 2x2 grid of THUMBNAIL_FRAMES, scaled to at least 256 px."""
    picked = [frames[min(index, len(frames) - 1)] for index in THUMBNAIL_FRAMES]
    grid = np.concatenate([np.concatenate(picked[:2], axis=1), np.concatenate(picked[2:], axis=1)], axis=0)
    zoom = max(1, -(-256 // grid.shape[0]))
    return grid.repeat(zoom, axis=0).repeat(zoom, axis=1)


def render_frames(host, api: dict) -> np.ndarray:
    from PIL import Image

    api = dict(api)
    (source,) = [node["inputs"]["images"] for node in api.values() if node["class_type"] == "CreateVideo"]
    api["thumbnail_frames"] = {"class_type": "SaveImage", "inputs": {"images": source, "filename_prefix": "thumb"}}
    run = host.run(api)
    if not run.success:
        raise RuntimeError(run.error())
    images = run.outputs["thumbnail_frames"]["images"]
    return np.stack([np.asarray(Image.open(host.output_dir / image["subfolder"] / image["filename"]).convert("RGB"))
                     for image in images])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_ui_workflows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--thumbnails", action="store_true", help="render the Mini variants and write thumbnails")
    parser.add_argument("--only", default="", help="with --thumbnails: the workflows (comma-separated) to render")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    sys.path.insert(0, str(ROOT / "tests"))
    from host_harness import InProcessHost
    from PIL import Image

    with tempfile.TemporaryDirectory() as base:
        host = InProcessHost(prepare_base(Path(base)))
        info = object_info_from_classes(host.nodes.NODE_CLASS_MAPPINGS)
        EXAMPLES.mkdir(exist_ok=True)
        for stem, api in variants():
            target = EXAMPLES / f"{stem}.json"
            target.write_text(json.dumps(api_to_ui(api, info), indent=2) + "\n")
            print(target)
            if args.thumbnails and stem.startswith(MINI_PREFIX) and (not only or stem[len(MINI_PREFIX):] in only):
                picture = Image.fromarray(thumbnail(render_frames(host, api)))
                for name in (stem, stem[len(MINI_PREFIX):]):  # the bundled variant shows the Mini's render too
                    picture.save(EXAMPLES / f"{name}.jpg", quality=90)
                    print(EXAMPLES / f"{name}.jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
