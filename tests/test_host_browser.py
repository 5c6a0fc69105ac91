"""A new user's first hour, in a real browser: ComfyUI's own frontend, served by the real host with
only the pack installed (no model in its models folder), opened in a headless Chromium (the npm
package @sparticuz/chromium ships the binary; puppeteer-core drives it; scripts/build_browser.sh
installs both). From the Templates menu, under the pack's entry, each UniVG Mini template is
opened and the prompt the frontend would queue for it must be the template's own graph converted
(tools.workflow_format.ui_to_api: the API twin the two hosts' servers render, test_host_versions.py);
two are Run (the paper's text route and the two-keyframe one, whose images a fresh user must have),
and their finished videos must show in the Save Video node. The screenshots (the menu, each
template's page and the players) are copied to .cache/browser/ after the run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from tools.comfy_host import Server, get_json, output_files, prepare_base, status_of
from tools.mini_workflows import video_length
from tools.workflow_format import ui_to_api, without_meta
from univg_core.mini import towers

pytestmark = pytest.mark.host
ROOT = Path(__file__).resolve().parent.parent
BROWSER = ROOT / "tests" / "browser"
TEMPLATES = ROOT / "example_workflows"
SCREENSHOTS = ROOT / ".cache" / "browser"
CATEGORY = "comfyui-univg"  # the pack's folder name in custom_nodes: the Templates menu lists it under Extensions
RUN_IN_THE_BROWSER = ("univg_mini_text_to_video_two_stage", "univg_mini_keyframe_interpolation")


def browser_ready() -> bool:
    return shutil.which("node") is not None and (BROWSER / "node_modules" / "puppeteer-core").is_dir()


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    if not browser_ready():
        if os.environ.get("CI"):
            pytest.fail("the browser test needs node and `bash scripts/build_browser.sh`; CI must run it")
        pytest.skip("no node or no tests/browser/node_modules: run `bash scripts/build_browser.sh`")
    base = prepare_base(tmp_path_factory.mktemp("fresh_comfyui"))
    with Server(base) as running:
        yield running


def expected_video(api: dict) -> tuple[int, int]:
    """(frames, side) of the template's video: mini_workflows.video_length, and its largest width
    (the upscaler's, where it has one)."""
    frames = video_length(api)
    side = max(node["inputs"]["width"] for node in api.values() if isinstance(node["inputs"].get("width"), int))
    return frames, side


def decoded_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_a_new_user_opens_every_mini_template_from_the_templates_menu_and_sees_the_runs_video(fresh_server, tmp_path):
    base = fresh_server.base
    assert not list((base / "models").rglob("*.safetensors"))  # the pack alone: nothing installed
    names = sorted(path.stem for path in TEMPLATES.glob("*.json"))
    minis = [name for name in names if name.startswith("univg_mini_")]
    info = get_json(fresh_server.url, "/object_info")
    apis = {name: ui_to_api(json.loads((TEMPLATES / f"{name}.json").read_text()), info) for name in minis}
    assert set(RUN_IN_THE_BROWSER) <= set(minis)
    plan = {"url": fresh_server.url + "/", "category": CATEGORY, "out_dir": str(tmp_path), "timeout_s": 600,
            "run": [{"name": name, "videos": 1, "queue": name in RUN_IN_THE_BROWSER} for name in minis]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run(["node", str(BROWSER / "run_templates.mjs"), str(tmp_path / "plan.json")], cwd=BROWSER,
                          capture_output=True, text=True, timeout=len(RUN_IN_THE_BROWSER) * 600 + len(minis) * 60 + 300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for picture in tmp_path.glob("*.png"):
        shutil.copy(picture, SCREENSHOTS / picture.name)
    assert "failure" not in result, f"{result['failure']}\nserver log:\n{fresh_server.log_tail()}"
    assert set(names) <= set(result["listed"]), f"the Templates menu lists {result['listed']}"
    assert (tmp_path / "templates_menu.png").is_file()

    opened = {run["name"]: run for run in result["runs"]}
    assert sorted(opened) == minis
    for name, run in opened.items():
        assert not [text for text in run["dialogs"] if "missing" in text.lower()], (name, run["dialogs"])
        assert without_meta(run["prompt"]) == without_meta(apis[name]), f"{name}: the frontend queues another prompt"
    ran = {name: opened[name] for name in RUN_IN_THE_BROWSER}
    for name, run in ran.items():
        assert "error" not in run, f"{name}: {run['error']}\nserver log:\n{fresh_server.log_tail()}"
        frames, side = expected_video(apis[name])
        assert run["videos"], f"{name}: no finished video in the Save Video node after {run['seconds']} s"
        shown = run["videos"][0]
        assert (shown["width"], shown["height"]) == (side, side), (name, shown)
        assert (tmp_path / f"{name}_video.png").is_file()

    history = get_json(fresh_server.url, "/history")
    assert len(history) == len(RUN_IN_THE_BROWSER)
    shown_files = {run["videos"][0]["file"]: name for name, run in ran.items()}
    for entry in history.values():
        assert status_of(entry)[0] == "success", status_of(entry)
        for path in output_files(entry, base / "output"):
            if path.name not in shown_files:
                continue
            name = shown_files.pop(path.name)
            video = decoded_frames(path)
            frames, side = expected_video(apis[name])
            assert video.shape == (frames, side, side, 3), (name, video.shape)
            assert np.ptp(video) > 64, f"{name}: a flat video"
    assert not shown_files, f"videos the page showed that no prompt wrote: {shown_files}"
    # the Mini's towers were built (or linked from the pack's cache) by the loader on first use
    assert (base / "models" / "text_encoders" / towers.TEXT_FILE).is_file()
