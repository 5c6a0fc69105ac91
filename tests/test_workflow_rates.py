"""The per-workflow reading of tools/workflow_rates.py on the world's own clips: the example clip
passes what each workflow asks, and each way of contradicting the caption fails for its reason.
(The renders themselves: tests/test_host_mini.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from tools.mini_workflows import MINI_MODELS
from tools.workflow_rates import asked, read_video, table
from univg_core.mini.world import EXAMPLE_RADIUS, EXAMPLE_START, TRAVEL, ClipSpec, render


def example_clip(colour="red", background="dark", direction=1.0, frames=8) -> np.ndarray:
    """The example caption's clip: the circle from the example image's place, TRAVEL to the right."""
    x, y = EXAMPLE_START if direction > 0 else (EXAMPLE_START[0] + TRAVEL, EXAMPLE_START[1])
    centres = tuple((x + direction * TRAVEL * step, y) for step in np.linspace(0, 1, frames))
    spec = ClipSpec(shape="circle", colour=colour, background=background, motion="right",
                    centres=centres, radii=(EXAMPLE_RADIUS,) * frames)
    return render(spec, 64)


@pytest.mark.parametrize("name", sorted(MINI_MODELS))
def test_the_example_clip_shows_what_every_workflow_asks(name):
    reading = read_video(name, example_clip())
    assert reading.passed and reading.colour_share == 1.0, reading


def test_a_video_that_contradicts_the_caption_fails_for_its_reason():
    assert read_video("animation", example_clip(direction=-1.0)).verdict == "moves left"
    assert read_video("animation", example_clip(colour="yellow")).verdict == "one red object in 0% of frames"
    assert read_video("animation", example_clip(background="light")).verdict == "background light"
    # the image alone asks for no direction; the interpolation asks for the way from one keyframe to the other
    assert read_video("image_to_video", example_clip(direction=-1.0)).passed
    assert read_video("keyframe_interpolation", example_clip()[[0, 1, 2, 6, 5, 4, 3, 7]]).verdict == "backward"


def test_three_lost_frames_of_eight_fail_and_two_pass():
    clip = example_clip()
    blank = clip[0, 0, 0]
    two, three = clip.copy(), clip.copy()
    two[[2, 5]] = blank
    three[[2, 4, 6]] = blank
    assert read_video("text_to_video", two).passed
    assert read_video("text_to_video", three).verdict == "one red object in 62% of frames"


def test_a_frame_whose_object_is_broken_in_two_does_not_count():
    clip = example_clip()
    broken = clip.copy()
    background = clip[0, 0, 0]
    for frame in (1, 3, 5):
        xs = np.flatnonzero((clip[frame] != background).any(axis=-1).any(axis=0))
        broken[frame, :, xs[len(xs) // 2] - 1:xs[len(xs) // 2] + 2] = background  # a 3-px cut through the circle
    reading = read_video("animation", broken)
    assert reading.colour_share == 5 / 8 and reading.verdict == "one red object in 62% of frames", reading


def test_a_long_videos_motion_is_read_over_its_first_window():
    """29 frames: the first 8 move right, then the circle comes back; its direction is the first window's."""
    clip = example_clip(frames=8)
    long_video = np.concatenate([clip, clip[::-1], clip, clip[::-1][:5]])
    assert len(long_video) == 29 and read_video("long_video", long_video).passed


def test_the_table_gives_each_workflows_rate_and_failures():
    readings = {"animation": [read_video("animation", example_clip()), read_video("animation", example_clip(direction=-1.0))]}
    text = table(readings)
    assert "| animation | " + asked("animation") + " | 1/2 (50%) | 100% | right 1, left 1 | moves left 1 |" in text
