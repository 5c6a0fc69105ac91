"""The pack in a headless ComfyUI server on 127.0.0.1: POST /prompt, /history, /interrupt,
and the batch-queue command against it. It renders with UniVG Mini (installed into the
server's models folder), so a render takes seconds and the suite runs in CI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tools import queue_batch
from tools.comfy_host import Server, get_json, interrupt, prepare_base, queue_prompt, status_of, wait_for
from tools.main_job import example_image
from tools.progress_watch import ProgressWatcher
from univg_core.mini import models

pytestmark = pytest.mark.host
ROOT = Path(__file__).resolve().parent.parent
SMALL = {"steps": 2, "frames": 8, "width": 64, "height": 64}
MODEL = models.BASE_FILE


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from univg_core.cli.install_mini import install

    base = prepare_base(tmp_path_factory.mktemp("server_base"))
    install(base / "models", log=lambda message: None)  # UniVG Mini: renders in seconds
    example_image(base / "input" / "univg_example.png")
    example_image(base / "input" / "univg_example_last.png", last=True)
    with Server(base, extra_args=("--preview-method", "latent2rgb")) as running:
        yield running
    assert running.process.returncode is not None


def t2v(**changes) -> dict:
    api = json.loads((ROOT / "workflows" / "api" / "text_to_video.json").read_text())
    api["1"]["inputs"]["ckpt_name"] = MODEL
    api["4"]["inputs"].update(SMALL, **changes)
    return api


def test_server_lists_the_nodes(server):
    info = get_json(server.url, "/object_info/UniVGBaseSampler")
    assert info["UniVGBaseSampler"]["category"] == "UniVG"
    assert MODEL in get_json(server.url, "/object_info/UniVGCheckpointLoader")[
        "UniVGCheckpointLoader"]["input"]["required"]["ckpt_name"][0]


def test_interrupt_mid_sampling_then_next_prompt_renders(server):
    warm = wait_for(server.url, queue_prompt(server.url, t2v()), timeout=900)  # loader and CLIP outputs now cached
    assert status_of(warm)[0] == "success", status_of(warm)
    long_run = queue_prompt(server.url, t2v(steps=1000, seed=5))
    deadline = time.monotonic() + 120
    while not get_json(server.url, "/queue")["queue_running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    interrupt(server.url)
    entry = wait_for(server.url, long_run, timeout=300)
    status, _ = status_of(entry)
    assert status == "interrupted"
    events = dict((event, data) for event, data in entry["status"]["messages"])
    assert events["execution_interrupted"]["node_type"] == "UniVGBaseSampler"
    assert not entry.get("outputs")  # no partial file
    assert server.alive()
    after = wait_for(server.url, queue_prompt(server.url, t2v(seed=6)), timeout=900)
    assert status_of(after)[0] == "success"


def test_progress_watcher_prints_each_node_and_step_of_a_live_render(server):
    api = t2v(steps=3, seed=11)
    lines: list[str] = []
    with ProgressWatcher(server.url, {k: v["class_type"] for k, v in api.items()}, lines.append, interval=0) as watch:
        assert watch.connected.is_set() and watch.error is None
        entry = wait_for(server.url, queue_prompt(server.url, api, client_id=watch.client_id), timeout=900)
        deadline = time.monotonic() + 30
        while "finished" not in lines and time.monotonic() < deadline:
            time.sleep(0.1)
    assert status_of(entry)[0] == "success"
    assert watch.error is None, watch.error
    assert lines[0] == "started" and lines[-1] == "finished", lines
    sampler = lines.index("running UniVGBaseSampler (node 4)")
    steps = [line for line in lines if line.startswith("UniVGBaseSampler (node 4): ")]
    assert [line.split(": ")[1].split(",")[0] for line in steps] == ["1/3", "2/3", "3/3"]
    assert lines.index(steps[0]) > sampler
    assert "running UniVGVAEDecode (node 5)" in lines and "running SaveVideo (node 20)" in lines


def watched_render(server, api) -> tuple[dict, ProgressWatcher]:
    with ProgressWatcher(server.url, {k: v["class_type"] for k, v in api.items()}, lambda line: None) as watch:
        entry = wait_for(server.url, queue_prompt(server.url, api, client_id=watch.client_id), timeout=900)
        time.sleep(1.0)  # the last messages may still be in flight
    return entry, watch


def test_live_previews_come_with_the_steps_of_univg_and_core_samplers(server):
    """With --preview-method, each sampling step sends a preview image: the UniVG Base
    Sampler's and core KSampler's on a UniVG model alike."""
    ours, watch = watched_render(server, t2v(steps=4, seed=12))
    assert status_of(ours)[0] == "success" and watch.error is None
    assert watch.previews >= 4, watch.previews
    api = json.loads((ROOT / "workflows" / "api" / "text_to_video_ksampler.json").read_text())
    api["1"]["inputs"]["ckpt_name"] = MODEL
    api["4"]["inputs"].update(steps=4, seed=12)
    api["7"]["inputs"].update(width=64, height=64, batch_size=8)
    core, watch = watched_render(server, api)
    assert status_of(core)[0] == "success", status_of(core)
    assert watch.previews >= 4, watch.previews


def write_lines(path: Path, rows) -> Path:
    path.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in rows) + "\n")
    return path


def test_batch_of_six_renders_six_files(server, tmp_path, capsys):
    workflow = tmp_path / "t2v.json"
    workflow.write_text(json.dumps(t2v()))
    batch = write_lines(tmp_path / "batch.jsonl", [{"prompt": f"a paper boat, take {i}", "seed": 100 + i} for i in range(6)])
    code = queue_batch.main(["--server", server.url, "--workflow", str(workflow), "--batch", str(batch),
                             "--output-dir", str(server.base / "output"), "--timeout", "900"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = [line for line in printed.splitlines() if line.startswith("[")]
    assert len(lines) == 6 and all(" ok: " in line for line in lines)
    files = [Path(line.split(" ok: ")[1]) for line in lines]
    assert len(set(files)) == 6 and all(f.is_file() and f.stat().st_size > 0 for f in files)
    assert "6 rendered, 0 failed" in printed


def test_batch_failures_are_reported_per_item_and_the_server_keeps_serving(server, tmp_path, capsys):
    workflow = tmp_path / "bad.json"
    workflow.write_text(json.dumps(t2v(width=100)))
    batch = write_lines(tmp_path / "batch.csv", ["prompt,seed", "one,1", "two,2"])
    batch.write_text("prompt,seed\none,1\ntwo,2\n")
    code = queue_batch.main(["--server", server.url, "--workflow", str(workflow), "--batch", str(batch),
                             "--output-dir", str(server.base / "output"), "--timeout", "600"])
    printed = capsys.readouterr().out
    assert code == 1
    assert printed.count("error: UniVGBaseSampler") == 2 and "multiples of 64" in printed
    assert "0 rendered, 2 failed" in printed
    assert status_of(wait_for(server.url, queue_prompt(server.url, t2v(seed=9)), timeout=900))[0] == "success"


@pytest.mark.parametrize(
    "rows,message",
    [
        (['{"prompt": "ok"}', "{not json"], "not valid JSON"),
        ([{"prompt": 3}], "'prompt' must be a string"),
        ([{"prompt": "x", "seed": "soon"}], "'seed' must be an integer"),
        ([{"prompt": "x", "colour": "red"}], "unknown fields"),
        ([{"prompt": "x", "image": "missing.png"}], "not found"),
        ([], "empty"),
    ],
)
def test_malformed_batch_queues_nothing(server, tmp_path, capsys, rows, message):
    workflow = tmp_path / "t2v.json"
    workflow.write_text(json.dumps(t2v()))
    batch = write_lines(tmp_path / "batch.jsonl", rows) if rows else tmp_path / "empty.jsonl"
    if not rows:
        batch.write_text("")
    history_before = len(get_json(server.url, "/history"))
    code = queue_batch.main(["--server", server.url, "--workflow", str(workflow), "--batch", str(batch)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert len(get_json(server.url, "/history")) == history_before


def test_batch_with_images_needs_an_image_node(server, tmp_path, capsys):
    workflow = tmp_path / "t2v.json"
    workflow.write_text(json.dumps(t2v()))
    example_image(tmp_path / "frame.png")
    batch = write_lines(tmp_path / "batch.jsonl", [{"prompt": "x", "image": "frame.png"}])
    assert queue_batch.main(["--server", server.url, "--workflow", str(workflow), "--batch", str(batch)]) == 2
    assert "no Load Image titled 'Input image'" in capsys.readouterr().err


# ------------------------------------------------------------------ bad input, through the server


def failure(server, api: dict) -> str:
    """The message a user sees for a prompt that must fail: its execution error, or the
    validation error of POST /prompt; and no output file was written."""
    from tools.comfy_host import PromptRejected

    try:
        entry = wait_for(server.url, queue_prompt(server.url, api), timeout=900)
    except PromptRejected as rejected:
        return json.dumps(rejected.details)
    status, message = status_of(entry)
    assert status == "error" and not entry.get("outputs"), (status, message)
    assert server.alive()
    return message


@pytest.mark.parametrize("field", ["text_weight", "image_weight"])
def test_a_nan_weight_is_refused_by_name_not_blamed_on_fp16(server, field):
    """NaN passes ComfyUI's range check; image_weight NaN on a text-only workflow used to render silently."""
    message = failure(server, t2v(**{field: float("nan")}))
    assert f"{field} must be a finite number, got nan" in message and "fp16" not in message, message


def test_out_of_range_and_unknown_files_are_validation_errors(server):
    assert "Value 0 smaller than min of 1" in failure(server, t2v(frames=0))
    traversal = t2v()
    traversal["1"]["inputs"]["ckpt_name"] = "../../../etc/passwd"
    assert "Value not in list" in failure(server, traversal)


def _checkpoint_named(server, name: str, data: bytes) -> dict:
    (server.base / "models" / "univg" / name).write_bytes(data)
    api = t2v()
    api["1"]["inputs"]["ckpt_name"] = name
    return api


def test_random_bytes_and_code_running_pickles_get_their_true_reason(server):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    noise = bytes(range(7, 256)) * 64
    message = failure(server, _checkpoint_named(server, "noise.ckpt", noise))
    assert "noise.ckpt: not a PyTorch checkpoint or safetensors file" in message and "run code" not in message, message
    message = failure(server, _checkpoint_named(server, "payload.ckpt", pickle.dumps({"state_dict": Payload()})))
    assert "payload.ckpt: the file holds Python objects that would run code" in message, message
    assert f"{os.system.__module__}.system" in message and "weights_only" not in message, message
    assert not any(server.base.rglob("pwned.txt"))


@pytest.mark.parametrize("damage", ["truncated", "random_tensor_bytes"])
def test_a_damaged_mini_vae_names_itself_and_the_rebuild_command(server, damage):
    """A Mini file whose companion VAE (models/vae) is damaged: the error names the VAE, the file it
    belongs to and how to rebuild it (never a bare SafetensorError, never a black video)."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.torch import save_file

    from univg_core.checkpoints import COMPANIONS_KEY

    name = f"vae_{damage}.safetensors"
    source = server.base / "models" / "univg" / MODEL
    with safe_open(str(source), "pt") as reader:
        tensors = {key: reader.get_tensor(key) for key in reader.keys()}
        metadata = dict(reader.metadata())
    companions = json.loads(metadata[COMPANIONS_KEY])
    companions["vae"] = name
    save_file(tensors, str(server.base / "models" / "univg" / f"with_{name}"),
              metadata={**metadata, COMPANIONS_KEY: json.dumps(companions)})
    data = bytearray((server.base / "models" / "vae" / models.VAE_FILE).read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        start = 8 + int.from_bytes(data[:8], "little")
        data[start:] = np.random.default_rng(1).integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    (server.base / "models" / "vae" / name).write_bytes(bytes(data))
    api = t2v()
    api["1"]["inputs"]["ckpt_name"] = f"with_{name}"
    message = failure(server, api)
    assert f"the vae of with_{name}" in message and name in message, message
    assert "python -m univg_core.cli.install_mini" in message, message


def test_gpu_checks_comfyui_part_renders_the_animation_workflow_on_its_own_server(checkpoints, tmp_path):
    """tools.gpu_check_server as a CUDA machine runs it (there with --lowvram and a full-size model),
    here with --cpu on the tiny animation checkpoint: the workflow succeeds, a video is written and
    the report says what ran."""
    from tools import gpu_check_server

    out = tmp_path / "report.json"
    given = Path(checkpoints["folder"]) / checkpoints["univg_animation.safetensors"]
    assert gpu_check_server.main(["--cpu", "--tiny", "--steps", "2", "--checkpoint", str(given), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["status"] == "success" and report["video_written"], report
    assert report["server"] == "--cpu" and report["frames_height_width"] == [4, 64, 64] and report["peak_vram_gib"] is None
    assert 0 < report["seconds_per_step_upper_bound"] <= report["seconds_whole_prompt"]
