"""Queue a batch of renders against a running ComfyUI through its HTTP API, wait for all
of them, and report every output file.

    python -m tools.queue_batch --server http://127.0.0.1:8188 \\
        --workflow workflows/api/text_image_to_video.json --batch renders.jsonl

The batch file is JSON lines or CSV (header row), one render per line, with the fields
`prompt` (required), `negative`, `image` (a file path, uploaded to the server) and `seed`.
The workflow (API or UI format) marks where they go: the CLIP Text Encode titled
"Positive prompt" / "Negative prompt", the Load Image titled "Input image", and every
input named `seed`. Every save node's filename prefix gets the item number, so no two
renders overwrite each other. Exit status: 0 when every item rendered, 1 when any failed,
2 when the batch file or workflow is unusable (nothing is queued then).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .comfy_host import HostError, PromptRejected, get_json, output_files, queue_prompt, status_of, upload_image, wait_for
from .workflow_format import ui_to_api

FIELDS = {"prompt", "negative", "image", "seed"}
SAVE_NODES = {"SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveImage", "SaveWEBM", "SaveVideo"}


class BatchError(ValueError):
    pass


@dataclass
class Item:
    index: int
    prompt: str
    negative: str | None = None
    image: Path | None = None
    seed: int | None = None


@dataclass
class Result:
    item: Item
    status: str
    message: str = ""
    outputs: list[Path] = field(default_factory=list)


def read_batch(path: Path) -> list[Item]:
    path = Path(path)
    if not path.is_file():
        raise BatchError(f"{path}: no such batch file")
    text = path.read_text(encoding="utf-8")
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise BatchError(f"{path}: a CSV batch needs a header row with a 'prompt' column")
        rows = [(number + 2, row) for number, row in enumerate(reader)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BatchError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise BatchError(f"{path}:{number}: expected a JSON object like {{\"prompt\": \"...\"}}")
            rows.append((number, row))
    items = []
    for index, (number, row) in enumerate(rows):
        unknown = set(k for k, v in row.items() if v not in (None, "")) - FIELDS
        if unknown:
            raise BatchError(f"{path}:{number}: unknown fields {sorted(unknown)}; allowed: {sorted(FIELDS)}")
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            raise BatchError(f"{path}:{number}: 'prompt' must be a string")
        seed = row.get("seed")
        if seed not in (None, ""):
            try:
                seed = int(seed)
            except (TypeError, ValueError):
                raise BatchError(f"{path}:{number}: 'seed' must be an integer, got {seed!r}") from None
            if seed < 0:
                raise BatchError(f"{path}:{number}: 'seed' must be >= 0")
        else:
            seed = None
        image = row.get("image") or None
        if image is not None:
            image = (path.parent / image) if not Path(image).is_absolute() else Path(image)
            if not image.is_file():
                raise BatchError(f"{path}:{number}: image {image} not found")
        items.append(Item(index, prompt, row.get("negative") or None, image, seed))
    if not items:
        raise BatchError(f"{path}: the batch is empty")
    return items


def load_workflow(path: Path, server: str | None = None) -> dict:
    try:
        workflow = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BatchError(f"{path}: cannot read the workflow: {error}") from None
    if "nodes" in workflow and "links" in workflow:
        if server is None:
            raise BatchError("a UI-format workflow needs the server's node definitions to convert")
        workflow = ui_to_api(workflow, get_json(server, "/object_info"))
    if not all(isinstance(v, dict) and "class_type" in v for v in workflow.values()):
        raise BatchError(f"{path}: not a ComfyUI workflow (API format {{id: {{class_type, inputs}}}} or UI format)")
    return workflow


def _titled(workflow: dict, class_type: str, title: str) -> str | None:
    for node_id, node in workflow.items():
        if node["class_type"] == class_type and node.get("_meta", {}).get("title", "").lower() == title.lower():
            return node_id
    return None


def check_workflow(workflow: dict, items: list[Item]) -> None:
    if _titled(workflow, "CLIPTextEncode", "Positive prompt") is None:
        raise BatchError("the workflow has no CLIP Text Encode titled 'Positive prompt' to put the prompts in")
    if any(item.image for item in items) and _titled(workflow, "LoadImage", "Input image") is None:
        raise BatchError("the batch has images but the workflow has no Load Image titled 'Input image'")
    if not any(node["class_type"] in SAVE_NODES for node in workflow.values()):
        raise BatchError("the workflow has no save node, so a render would leave no file")


def apply_item(workflow: dict, item: Item, server: str) -> dict:
    graph = copy.deepcopy(workflow)
    graph[_titled(graph, "CLIPTextEncode", "Positive prompt")]["inputs"]["text"] = item.prompt
    negative = _titled(graph, "CLIPTextEncode", "Negative prompt")
    if item.negative is not None and negative is not None:
        graph[negative]["inputs"]["text"] = item.negative
    if item.image is not None:
        graph[_titled(graph, "LoadImage", "Input image")]["inputs"]["image"] = upload_image(server, item.image)
    for node in graph.values():
        if item.seed is not None and "seed" in node["inputs"] and not isinstance(node["inputs"]["seed"], list):
            node["inputs"]["seed"] = item.seed
        if node["class_type"] in SAVE_NODES and "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = f"{node['inputs']['filename_prefix']}_{item.index:04d}"
    return graph


def run_batch(server: str, workflow: dict, items: list[Item], output_dir: Path, timeout: float = 3600) -> list[Result]:
    check_workflow(workflow, items)
    queued: list[tuple[Item, str | None, str]] = []
    for item in items:
        try:
            queued.append((item, queue_prompt(server, apply_item(workflow, item, server)), ""))
        except (PromptRejected, HostError, OSError) as error:
            queued.append((item, None, f"rejected: {error}"))
    results = []
    for item, prompt_id, problem in queued:
        if prompt_id is None:
            results.append(Result(item, "error", problem))
            continue
        try:
            entry = wait_for(server, prompt_id, timeout=timeout)
        except HostError as error:
            results.append(Result(item, "error", str(error)))
            continue
        status, message = status_of(entry)
        files = output_files(entry, output_dir)
        if status == "success" and not files:
            status, message = "error", "finished but wrote no file"
        results.append(Result(item, status, message, files))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.queue_batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--workflow", required=True, type=Path)
    parser.add_argument("--batch", required=True, type=Path)
    parser.add_argument("--output-dir", type=Path, default=Path("output"), help="the server's output folder")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for each render")
    args = parser.parse_args(argv)
    try:
        items = read_batch(args.batch)
        workflow = load_workflow(args.workflow, args.server)
        results = run_batch(args.server.rstrip("/"), workflow, items, args.output_dir, args.timeout)
    except BatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = 0
    for result in results:
        if result.status == "success":
            print(f"[{result.item.index}] ok: " + ", ".join(str(p) for p in result.outputs))
        else:
            failed += 1
            print(f"[{result.item.index}] {result.status}: {result.message}")
    print(f"{len(results) - failed} rendered, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
