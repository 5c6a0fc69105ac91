"""Every bundled workflow rendered with UniVG Mini by headless servers of both supported
hosts, ComfyUI 0.3.75 (from the package registry) and ComfyUI 0.8.0 (the source tree in
../shared/hosts, built by scripts/build_host.sh): each writes an H.264 MP4 of the expected
frames and fps, and the two hosts give the same frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_host import read_mp4
from tools.comfy_host import HOSTS, HostError, Server, output_files, prepare_base, queue_prompt, status_of, wait_for
from tools.mini_workflows import MINI_MODELS, apply_mini

pytestmark = pytest.mark.host
ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted(path.stem for path in (ROOT / "workflows" / "api").glob("*.json"))
SETTINGS = {"steps": 6}  # the Mini's 64x64, 8 frames, 8 fps


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """version -> workflow -> (status, MP4 frames, fps, codec, PNG frames), every workflow on
    each host; a core Save Image beside Save Video keeps the frames before H.264."""
    from univg_core.cli.install_mini import install

    models = tmp_path_factory.mktemp("mini_models")
    install(models, log=lambda message: None)  # once: both hosts' bases link this models folder
    results = {}
    for version in HOSTS:
        try:
            server = Server(prepare_base(tmp_path_factory.mktemp(f"host_{version}"), models=models), version=version)
        except HostError as error:
            pytest.skip(f"ComfyUI {version}: {error} (it needs ../shared/hosts/comfyui-0.8.0.tar.gz)")
        results[version] = {}
        with server:
            for name in WORKFLOWS:
                api = apply_mini(json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text()), name,
                                 settings=SETTINGS)
                (frames_source,) = [node["inputs"]["images"] for node in api.values() if node["class_type"] == "CreateVideo"]
                api["frames_png"] = {"class_type": "SaveImage", "inputs": {"images": frames_source,
                                                                           "filename_prefix": f"frames/{name}"}}
                entry = wait_for(server.url, queue_prompt(server.url, api), timeout=900)
                status = status_of(entry)
                files = output_files(entry, server.base / "output")
                videos = [path for path in files if path.suffix == ".mp4"]
                pngs = np.stack([np.asarray(Image.open(path)) for path in sorted(files) if path.suffix == ".png"]) \
                    if status[0] == "success" else None
                mp4 = read_mp4(videos[0]) if len(videos) == 1 else (None, 0.0, "")
                results[version][name] = (status, *mp4, pngs)
    return results


def test_every_bundled_workflow_has_a_mini_setup():
    assert sorted(MINI_MODELS) == WORKFLOWS


@pytest.mark.parametrize("version", list(HOSTS))
def test_every_bundled_workflow_writes_an_h264_mp4_on_each_host(renders, version):
    for name in WORKFLOWS:
        status, frames, fps, codec, _ = renders[version][name]
        assert status[0] == "success", (name, status)
        size = 128 if name in ("base_then_super_resolution", "text_to_video_three_stage") else 64
        length = {"loop": 7, "long_video": 8 + 3 * 7}.get(name, 8)  # a loop drops its repeated frame; extended thrice
        assert frames.shape == (length, size, size, 3) and fps == 8.0 and codec == "h264", (name, frames.shape, fps, codec)
        assert frames.std() > 5, name  # a picture, not a flat frame


def test_both_hosts_give_the_same_frames(renders):
    """The frames before encoding (PNG) are the same on both hosts, to one 8-bit level. The
    MP4s are compared only loosely: PyAV's libx264 is not bit-reproducible (the same frames
    encoded twice on one host differed by up to 15 levels at a few pixels, and by 0.25 level
    on average once)."""
    first, second = (renders[version] for version in HOSTS)
    differences = {}
    for name in WORKFLOWS:
        before = np.abs(first[name][4].astype(int) - second[name][4].astype(int))
        encoded = np.abs(first[name][1].astype(int) - second[name][1].astype(int))
        differences[name] = (int(before.max()), round(float(encoded.mean()), 3))
        assert first[name][4].shape == first[name][1].shape, name  # the PNGs are the MP4's frames
    assert all(png <= 1 and mp4 < 1.0 for png, mp4 in differences.values()), differences


# test_host.py's renders of the bundled workflows with the test checkpoints are not repeated on 0.8.0:
# the server above renders every bundled workflow on 0.8.0 to an H.264 MP4 (with the Mini), and the
# rerun keeps the real checkpoint layouts under the UniVG nodes (test_host_keyframes.py: animation
# sampler, keyframes, extend video; test_host.py's bad input) and under core samplers (every family)
# nor are test_host_keyframes.py's two calls of the UniVG Upscaler's method on 128-px test checkpoints:
# the server renders both bundled upscaler workflows on 0.8.0 through that node (the Mini's F_SR, `auto`)
UPSCALER_CALLS = ("test_bgn_consistent_sampling_through_the_upscaler",
                  "test_the_upscalers_auto_sampling_is_plain_for_a_model_trained_without_bgn")
# core samplers and schedulers on 0.8.0 with three of the six families: eps with image tokens
# (VideoCrafter1-I2V), v on a zero-terminal-SNR schedule with the image concat and guidance rescale
# (DynamiCrafter 512), v with a BGN window (F_SR); the host's side of sampling is the same for every
# family, and the other three run on 0.3.75
FAMILIES_ON_0_3_75_ONLY = ("videocrafter2_t2v_512", "univg_base", "univg_animation")
LEFT_OUT_ON_0_8_0 = ([f"tests/test_host.py::test_bundled_workflow_renders_an_mp4[{name}]" for name in WORKFLOWS]
                     + [f"tests/test_host_keyframes.py::{name}" for name in UPSCALER_CALLS]
                     + ["tests/test_host_core_sampling.py::test_core_ksampler_renders_every_family_with_every_sampler_and_"
                        f"scheduler[{family}]" for family in FAMILIES_ON_0_3_75_ONLY])


def test_the_in_process_host_suites_pass_on_comfyui_0_8_0():
    """tests/test_host_core_sampling.py (core samplers and schedulers on three families, the
    guider, first-frame concat, BGN sigmas, model patches), tests/test_host.py (registration,
    the workflows' UI and API twins, bad input) and tests/test_host_keyframes.py (interpolation,
    loop, keyframe conditioning, extend video) again, in-process on the second host."""
    import os
    import subprocess

    tree, python = HOSTS["0.8.0"]
    if not (tree / "main.py").is_file() or not python.is_file():
        pytest.skip("ComfyUI 0.8.0 is not built (scripts/build_host.sh needs ../shared/hosts/comfyui-0.8.0.tar.gz)")
    command = [str(python), "-m", "pytest", "-p", "no:warnings",
               "tests/test_host_core_sampling.py", "tests/test_host.py", "tests/test_host_keyframes.py"]
    command += [f"--deselect={test}" for test in LEFT_OUT_ON_0_8_0]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "UNIVG_HOST_VERSION": "0.8.0"},
                            capture_output=True, text=True, timeout=2400)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0 and " passed" in summary and "skipped" not in summary, result.stdout[-6000:]
    assert f"{len(LEFT_OUT_ON_0_8_0)} deselected" in summary, summary
