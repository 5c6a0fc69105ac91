"""UniVG Mini's procedural world and the detector that scores videos of it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from univg_core.mini.dataset import read_truth, write_dataset
from univg_core.mini.detector import detect
from univg_core.mini.world import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPES,
    attribute_grid,
    caption_for,
    make_spec,
    make_specs,
    render,
)
from univg_core.training.data import find_clips, read_video

# sha256 of render(make_specs(4, seed=7, frames=8)) at 64x64: the world is the same bytes everywhere
WORLD_CHECKSUM = "a694cad4ef2b9be4f39f080dde3ed8c69141df47232033970652d5bf5e368e9c"


def test_the_world_is_the_same_bytes_for_a_seed():
    specs = make_specs(4, seed=7, frames=8)
    digest = hashlib.sha256(b"".join(render(spec, 64).tobytes() for spec in specs)).hexdigest()
    assert digest == WORLD_CHECKSUM
    assert [spec.caption for spec in specs][:1] == ["a red triangle moving down on a gray background"]
    assert make_specs(4, seed=8, frames=8) != specs


def test_specs_cover_the_attribute_grid_and_stay_in_frame():
    assert len(SHAPES) >= 3 and len(COLOURS) >= 5 and len(MOTIONS) >= 5 and len(BACKGROUNDS) >= 2
    specs = make_specs(len(attribute_grid()), seed=3, frames=16)
    assert {(s.shape, s.colour, s.background, s.motion) for s in specs} == set(attribute_grid())
    for spec in specs:
        for (x, y), radius in zip(spec.centres, spec.radii):
            assert radius <= x <= 1 - radius and radius <= y <= 1 - radius
    assert caption_for("circle", "red", "right", "dark") == "a red circle moving right on a dark background"
    assert caption_for("square", "blue", "growing", "light") == "a blue square growing on a light background"


def test_one_clip_renders_at_any_resolution():
    spec = make_spec("circle", "red", "dark", "right", 8, np.random.default_rng(0))
    low, high = render(spec, 64), render(spec, 128)
    assert low.shape == (8, 64, 64, 3) and high.shape == (8, 128, 128, 3)
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(high).permute(0, 3, 1, 2).double(), 2)
    difference = np.abs(pooled.permute(0, 2, 3, 1).numpy() - low)
    assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 12  # same geometry; edges sampled apart
    for (x, y), (x_high, y_high) in zip(detect(low).centroids, detect(high).centroids):
        assert abs(x - x_high) < 0.01 and abs(y - y_high) < 0.01


def test_detector_reads_every_clip_of_the_world():
    specs = make_specs(len(attribute_grid()), seed=11, frames=8)
    wrong = [(spec.caption, detect(render(spec, 64))) for spec in specs]
    wrong = [(caption, d) for (caption, d), spec in zip(wrong, specs)
             if not d.matches(shape=spec.shape, colour=spec.colour, motion=spec.motion, background=spec.background)]
    assert len(wrong) <= 2, wrong[:3]


def test_detector_on_blurred_noisy_videos():
    """A model's output is softer and noisier than the renders: blur 3x3, Gaussian noise 0.05."""
    rng = np.random.default_rng(0)
    specs = make_specs(90, seed=12, frames=8)
    right = {"shape": 0, "colour": 0, "motion": 0, "background": 0}
    for spec in specs:
        video = torch.from_numpy(render(spec, 64)).permute(0, 3, 1, 2).double() / 255
        video = torch.nn.functional.avg_pool2d(video, 3, 1, 1, count_include_pad=False).permute(0, 2, 3, 1).numpy()
        detection = detect(np.clip(video + rng.normal(0, 0.05, video.shape), 0, 1))
        for key in right:
            right[key] += getattr(detection, key) == getattr(spec, key)
    assert min(right.values()) >= 0.95 * len(specs), right


def test_detector_tracks_the_centroid_and_says_when_nothing_is_there():
    spec = make_spec("square", "yellow", "dark", "left", 8, np.random.default_rng(1))
    detection = detect(render(spec, 64))
    for (x, y), (true_x, true_y) in zip(detection.centroids, spec.centres):
        assert abs(x - true_x) < 0.02 and abs(y - true_y) < 0.02
    assert detection.displacement[0] < -0.2 and detection.motion == "left"
    reversed_clip = detect(render(spec, 64)[::-1])
    assert reversed_clip.motion == "right"
    still = detect(np.repeat(render(spec, 64)[:1], 8, axis=0))
    assert still.found and still.motion == "still"
    empty = detect(np.full((8, 64, 64, 3), 128, dtype=np.uint8))
    assert not empty.found and not empty.matches(colour="red")
    assert empty.background == "gray"  # read even where no object is found
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        detect(np.zeros((64, 64, 3)))


def test_dataset_is_what_the_training_cli_reads(tmp_path):
    specs = write_dataset(tmp_path / "world", count=6, seed=2, frames=8, size=64, log=None)
    clips = find_clips(tmp_path / "world")
    assert [clip.caption for clip in clips] == [spec.caption for spec in specs]
    video, rate = read_video(clips[0].path, 64, 64, max_frames=16)
    assert video.shape == (8, 3, 64, 64) and rate == 8
    decoded = ((video + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(decoded - render(specs[0], 64)).max() <= 0.5  # lossless
    truth = read_truth(tmp_path / "world")
    assert truth[0]["caption"] == specs[0].caption and len(truth[0]["centres"]) == 8


def test_the_shipped_example_image_is_the_worlds_example_frame():
    from pathlib import Path

    from PIL import Image

    from univg_core.mini.world import EXAMPLE_CAPTION, EXAMPLE_IMAGE_FILE, example_image

    shipped = np.asarray(Image.open(Path(__file__).resolve().parent.parent / "workflows" / EXAMPLE_IMAGE_FILE).convert("RGB"))
    assert np.array_equal(shipped, example_image())
    found = detect(np.stack([shipped, shipped]))
    assert found.matches(shape="circle", colour="red", motion="still")
    assert found.centroids[0][0] < 0.4 and EXAMPLE_CAPTION == "a red circle moving right on a dark background"
    # the interpolation workflows' last frame: the same circle, moved right by the world's travel
    from univg_core.mini.world import EXAMPLE_LAST_IMAGE_FILE, TRAVEL

    last = np.asarray(Image.open(Path(__file__).resolve().parent.parent / "workflows" / EXAMPLE_LAST_IMAGE_FILE).convert("RGB"))
    assert np.array_equal(last, example_image(last=True))
    moved = detect(np.stack([shipped, last]))
    assert moved.matches(shape="circle", colour="red", motion="right")
    assert abs(moved.centroids[1][0] - moved.centroids[0][0] - TRAVEL) < 0.03


def _area_halved(frames: np.ndarray) -> np.ndarray:
    count, size = frames.shape[0], frames.shape[1]
    return frames.astype(np.float64).reshape(count, size // 2, 2, size // 2, 2, 3).mean(axis=(2, 4))


def test_the_textured_clip_at_128_halves_to_the_untextured_one_and_carries_detail_above_64s_nyquist():
    """Super-resolution's truth: each shape's pixel pattern at 128x128, which a 2x area downsample
    removes (each 2x2 block keeps its mean, so the 64x64 world and its models stay as they are),
    and which puts energy above 64 px's Nyquist frequency that the untextured render lacks."""
    from univg_core.mini.texture import energy_above_nyquist

    for spec in make_specs(15, seed=3, frames=4):
        plain, textured = render(spec, 128), render(spec, 128, textured=True)
        halved = np.abs(_area_halved(textured) - _area_halved(plain))
        assert halved.max() <= 1.5 and halved.mean() < 0.05  # rounding, and clipping at a light background's edge
        assert (textured != plain).mean() > 0.02  # the object's pixels (about 4% of the frame) carry it
        assert energy_above_nyquist(textured, 64) > 5 * energy_above_nyquist(plain, 64)  # 7.7x at the least here
    with pytest.raises(ValueError, match="even size"):
        render(spec, 127, textured=True)


def test_the_texture_reader_names_every_shapes_pattern_and_finds_none_where_there_is_none():
    """Every combination of the world once, two frames each: the reader names the shape's pattern
    in every textured frame, and "none" on the untextured render and on bicubic upsampling of the
    64x64 clip (the detail an upscaler has to add)."""
    from univg_core.mini.texture import read_textures, texture_for

    specs = make_specs(len(attribute_grid()), seed=7, frames=2)
    for spec in specs:
        textured = render(spec, 128, textured=True)
        assert read_textures(textured) == [texture_for(spec.shape)] * 2, spec.caption
        assert read_textures(render(spec, 128)) == ["none"] * 2, spec.caption
    low = torch.from_numpy(render(specs[0], 64)).permute(0, 3, 1, 2).double()
    bicubic = torch.nn.functional.interpolate(low, scale_factor=2, mode="bicubic").clamp(0, 255)
    assert read_textures(bicubic.permute(0, 2, 3, 1).numpy().astype(np.uint8)) == ["none"] * 2
