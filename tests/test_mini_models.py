"""What the shipped UniVG Mini models do, scored by the world's detector: the text-to-video
model draws an object of the caption's colour that moves the caption's way, and the VAE
reconstructs held-out frames. Rendered with the core pipeline (the host tests render the same
files through ComfyUI)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from univg_core.cli.install_mini import WEIGHTS
from univg_core.mini import models, towers
from univg_core.mini.detector import detect
from univg_core.mini.render import MiniRenderer, load_mini_vae, to_pixels, to_uint8
from univg_core.mini.train_vae import heldout_psnr
from univg_core.evaluation.metrics import psnr as _psnr
from univg_core.evaluation.studies import held_out_specs
from univg_core.mini.world import BACKGROUNDS, COLOURS, SHAPES, attribute_grid, caption_for, make_spec, render

ROOT = Path(__file__).resolve().parent.parent
TOWERS = ROOT / ".cache" / "mini" / "towers"
BASE = WEIGHTS / models.BASE_FILE
FIRST_FRAME = WEIGHTS / models.FIRST_FRAME_FILE
ANIMATION = WEIGHTS / models.ANIMATION_FILE
SR = WEIGHTS / models.SR_FILE

# 10 captions (shape, colour, motion, background): every colour, motion, shape and background
CAPTIONS = [
    ("circle", "red", "right", "dark"),
    ("square", "blue", "left", "light"),
    ("triangle", "green", "up", "gray"),
    ("circle", "yellow", "down", "dark"),
    ("square", "purple", "growing", "gray"),
    ("triangle", "red", "left", "light"),
    ("circle", "blue", "up", "gray"),
    ("square", "green", "down", "dark"),
    ("triangle", "yellow", "right", "light"),
    ("circle", "purple", "left", "dark"),
]
SEEDS = (0, 1)
ROUTE_BATCH = 16  # videos sampled together: quicker per video than one at a time on 2 cores
T2V_SHORTFALL = ("issue 14 asks 80% of these 20 videos; F_B after 12000 steps follows 30% (6 of 20): "
                 "the caption's colour in 16, its motion in 7")


def test_the_shipped_vae_reconstructs_held_out_frames():
    """Issue 14 asks 30 dB on held-out frames; the shipped decoder (trained to read noisy
    latents too) measures 31.13 dB."""
    assert heldout_psnr(load_mini_vae(WEIGHTS / models.VAE_FILE)) >= 30.0


def test_super_resolutions_vae_passes_the_gate_on_held_out_clips():
    """Issue 36's gate for F_SR's VAE, before any UNet is trained on it: its 128x128 round trip of
    the textured world beats bicubic upsampling of the 64x64 clip on the object's edge pixels and
    keeps at least 70% of the truth's energy above 64 px's Nyquist frequency, and draws each
    shape's pattern (8 held-out clips, 4 frames each)."""
    from univg_core.mini.train_vae import sr_round_trip_scores

    scores = sr_round_trip_scores(load_mini_vae(WEIGHTS / models.SR_VAE_FILE), clips=8)
    ours, bicubic = scores["round_trip"], scores["bicubic"]
    assert ours["edge_psnr"] > bicubic["edge_psnr"], scores
    assert ours["energy_above_nyquist_share"] >= 0.7 and ours["texture_right"] >= 0.8, scores


VAE_COLOUR_SHORTFALL = (
    "the shipped VAE's encoder keeps a blue object on the gray background 0.03 (model units, in the object's "
    "latent cells) from the empty background, where the other colours stand 0.07-1.1 from it, and its decoder "
    "loses it: the detector reads the colour and motion in 81 of 90 round trips, gray/blue 0 of 6"
)


@pytest.mark.xfail(strict=True, reason=VAE_COLOUR_SHORTFALL)
def test_every_colour_of_the_world_survives_the_vae_round_trip_on_every_background():
    """Each colour on each background, 3 shapes x 2 motions, encoded and decoded by the shipped
    VAE: the detector reads the clip's colour and motion in at least 5 of the 6 round trips. A
    colour the VAE loses is one no UNet decoded by it can draw."""
    import torch

    vae = load_mini_vae(WEIGHTS / models.VAE_FILE)
    rng = np.random.Generator(np.random.PCG64(5))
    short = {}
    for background in BACKGROUNDS:
        for colour in COLOURS:
            read_right = 0
            for shape in SHAPES:
                for motion in ("left", "up"):
                    clip = render(make_spec(shape, colour, background, motion, frames=8, rng=rng), 64)
                    with torch.no_grad():
                        round_trip = to_uint8(vae.decode(vae.encode(to_pixels(clip))))
                    read_right += detect(round_trip).matches(colour=colour, motion=motion)
            if read_right < 5:
                short[f"{colour} on {background}"] = f"{read_right} of 6"
    assert not short, short


@pytest.fixture(scope="module")
def text_to_video(renderer):
    """F_B's video for (caption, seed), rendered once for every test of this module that asks
    (the 20 of CAPTIONS x SEEDS in batches)."""
    jobs = [(caption_for(*spec), seed) for spec in CAPTIONS for seed in SEEDS]  # the module's 20, sampled together
    videos = {}
    for start in range(0, len(jobs), ROUTE_BATCH):
        captions, seeds = zip(*jobs[start:start + ROUTE_BATCH])
        videos.update(zip(jobs[start:start + ROUTE_BATCH], renderer.text_to_videos(BASE, captions, seeds)))

    def render(caption: str, seed: int) -> np.ndarray:
        if (caption, seed) not in videos:
            videos[caption, seed] = renderer.text_to_video(BASE, caption, seed)
        return videos[caption, seed]

    return render


@pytest.mark.xfail(strict=True, reason=T2V_SHORTFALL)
def test_text_to_video_draws_the_captions_colour_moving_its_way(text_to_video):
    rows, passed = [], 0
    for shape, colour, motion, background in CAPTIONS:
        caption = caption_for(shape, colour, motion, background)
        for seed in SEEDS:
            found = detect(text_to_video(caption, seed))
            ok = found.matches(colour=colour, motion=motion)
            passed += ok
            rows.append(f"{caption!r} seed {seed}: {found.colour} {found.shape} {found.motion} {'ok' if ok else 'MISS'}")
    rate = passed / len(rows)
    print("\n".join(rows) + f"\npass rate {rate:.2f}")
    assert rate >= 0.8, "\n".join(rows)


AXES = {"right": (0, 1), "left": (0, -1), "down": (1, 1), "up": (1, -1)}  # motion: (axis, sign)


def room_ahead(centroid: tuple[float, float], motion: str) -> float:
    """How much of the frame lies ahead of an object at `centroid` moving `motion`."""
    axis, sign = AXES[motion]
    return 1 - centroid[axis] if sign > 0 else centroid[axis]


def object_place(found) -> str:
    return "nowhere" if not found.found else "({:.2f}, {:.2f})".format(*found.centroids[0])


class TwoStageRoute:
    """The text_to_video_two_stage workflow's route (the paper's text -> image -> F_A): the Mini's
    text-to-image model draws the caption's first frame, F_A animates it with the same caption
    and seed, guided from t = 300 as the workflows set up for the Mini do. Each (caption, seed) is
    rendered once per module; `render_all` samples many in batches (each video as it renders alone,
    within a uint8 level: tested below)."""

    def __init__(self, renderer: MiniRenderer):
        self.renderer = renderer
        self.videos: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def render_all(self, jobs: list[tuple[str, int]], batch: int = ROUTE_BATCH) -> None:
        todo = [job for job in dict.fromkeys(jobs) if job not in self.videos]
        for start in range(0, len(todo), batch):
            captions, seeds = zip(*todo[start:start + batch])
            images = [video[0] for video in self.renderer.text_to_videos(FIRST_FRAME, captions, seeds, frames=1)]
            videos = self.renderer.animate_many(ANIMATION, images, captions, seeds,
                                                guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T)
            self.videos.update(zip(zip(captions, seeds), zip(images, videos)))

    def __call__(self, caption: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(first frame, video)."""
        self.render_all([(caption, seed)])
        return self.videos[caption, seed]


@pytest.fixture(scope="module")
def two_stage(renderer):
    return TwoStageRoute(renderer)


def test_a_batch_of_the_route_renders_each_video_as_it_renders_alone(renderer):
    """Batching is only a speed-up: each video of a batch (its own caption and seed) is the video
    rendered alone, within one uint8 level (float sums differ with the batch's shape)."""
    jobs = [(caption_for(*spec), seed) for spec, seed in zip(CAPTIONS[:2], (5, 6))]
    batched, alone = TwoStageRoute(renderer), TwoStageRoute(renderer)
    batched.render_all(jobs, batch=2)
    for job in jobs:
        for ours, theirs in zip(batched.videos[job], alone(*job)):
            assert ours.shape == theirs.shape
            assert np.abs(ours.astype(int) - theirs).max() <= 1, job


def test_a_batch_needs_one_caption_and_seed_per_video(renderer):
    with pytest.raises(ValueError, match="one caption and one seed per video"):
        renderer.text_to_videos(FIRST_FRAME, ["a red circle moving right on a dark background"], [1, 2], frames=1)
    with pytest.raises(ValueError, match="first_frames"):
        renderer.animate_many(ANIMATION, [], ["a red circle moving right on a dark background"], [1])


def test_the_two_stage_route_starts_where_the_caption_can_move_and_follows_more_captions_than_f_b(
        two_stage, text_to_video):
    """The 20 videos of the F_B test through the two-stage route. The text-to-image model starts
    the object with room for the caption's motion (the world starts every path where it fits: at
    least 0.4 of the frame ahead) in every one it draws; then F_A moves it. Measured: 15 of 20 in
    full (colour 18, motion 15), room in 16 of 16, against F_B alone 6 (16, 7); the misses are
    the 2 blue circles on gray (the VAE: none drawn), the 2 growing squares (drawn small, as the
    world starts them; F_A does not grow them) and a green triangle F_A sends right."""
    rows, followed, moved, roomy, directed, followed_by_base = [], 0, 0, 0, 0, 0
    two_stage.render_all([(caption_for(*spec), seed) for spec in CAPTIONS for seed in SEEDS])
    for shape, colour, motion, background in CAPTIONS:
        caption = caption_for(shape, colour, motion, background)
        for seed in SEEDS:
            image, video = two_stage(caption, seed)
            start, found = detect(np.stack([image, image])), detect(video)
            if start.found and motion in AXES:
                directed += 1
                roomy += room_ahead(start.centroids[0], motion) >= 0.4
            followed += found.matches(colour=colour, motion=motion)
            moved += found.matches(motion=motion)
            followed_by_base += detect(text_to_video(caption, seed)).matches(colour=colour, motion=motion)
            rows.append(f"{caption!r} seed {seed}: first frame {start.colour} at {object_place(start)}, "
                        f"video {found.colour} {found.motion}")
    report = "\n".join(rows) + (f"\nin full {followed}/20 (F_B alone {followed_by_base}), motion {moved}/20, "
                                 f"room {roomy}/{directed}")
    print(report)
    assert directed >= 14 and roomy >= directed - 1, report
    assert followed >= 14 and followed > followed_by_base, report
    assert moved >= 14, report


# the seeds the route over the world was decided on (11 and 12, before any was rendered).
# UNIVG_ROUTE=world renders every caption once, the seeds taking turns along the grid (225 videos);
# UNIVG_ROUTE=full every caption at both seeds (450 videos). docs/developing.md has the counts of
# both, and why CI renders neither.
ROUTE_SEEDS = (11, 12)
ROUTE = os.environ.get("UNIVG_ROUTE", "")


def world_captions() -> dict[str, tuple[str, str]]:
    """Every caption of the world, in the grid's order, with its (colour, motion)."""
    return {caption_for(shape, colour, motion, background): (colour, motion)
            for shape, colour, background, motion in attribute_grid()}


def route_jobs(full: bool) -> list[tuple[str, int]]:
    captions = list(world_captions())
    if full:
        return [(caption, seed) for seed in ROUTE_SEEDS for caption in captions]
    return [(caption, ROUTE_SEEDS[index % len(ROUTE_SEEDS)]) for index, caption in enumerate(captions)]


def test_the_route_subset_covers_every_caption_once_with_both_seeds_taking_turns():
    jobs, full = route_jobs(full=False), route_jobs(full=True)
    assert len(jobs) == 225 and len({caption for caption, _ in jobs}) == 225
    assert set(jobs) < set(full) and len(full) == 450
    assert [seed for _, seed in jobs].count(11) == 113 and [seed for _, seed in jobs].count(12) == 112


@pytest.mark.skipif(ROUTE not in ("world", "full"), reason="the route over every caption of the world renders "
                    "225 videos (UNIVG_ROUTE=world) or 450 (UNIVG_ROUTE=full); CI renders the 20 above")
def test_the_two_stage_route_follows_80_percent_of_every_caption_of_the_world(two_stage):
    """Issue 14's text-to-video bar on the fullest fixed list there is: all 225 captions of the world
    (3 shapes x 5 colours x 3 backgrounds x 5 motions), each at one of the two seeds the Mini's F_A
    setting was decided on before any of them was rendered (taking turns), or at both with
    UNIVG_ROUTE=full (docs/developing.md has the measured counts of both)."""
    jobs = route_jobs(full=ROUTE == "full")
    two_stage.render_all(jobs)
    rows, followed, attributes = [], {seed: 0 for seed in ROUTE_SEEDS}, world_captions()
    for caption, seed in jobs:
        colour, motion = attributes[caption]
        found = detect(two_stage(caption, seed)[1])
        ok = found.matches(colour=colour, motion=motion)
        followed[seed] += ok
        if not ok:
            rows.append(f"{caption!r} seed {seed}: {found.colour} {found.motion}")
    report = "\n".join(rows) + f"\nfollowed {sum(followed.values())} of {len(jobs)}; per seed {followed}"
    print(report)
    (ROOT / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "route_over_the_world.txt").write_text(report + "\n")  # the count, for a passing run too
    assert sum(followed.values()) >= 0.8 * len(jobs), report


def test_the_readme_frames_are_what_the_shipped_f_b_renders(text_to_video):
    """docs/univg_mini_text_to_video.png is `python -m tools.make_readme_frames` on the shipped
    files (within a level on average: float sums differ a little between CPUs)."""
    from tools import make_readme_frames

    _assert_readme_picture(make_readme_frames.OUT, text_to_video)


def test_the_readme_two_stage_frames_are_what_the_shipped_route_renders(two_stage):
    """docs/univg_mini_two_stage.png is `python -m tools.make_readme_frames --two-stage`."""
    from tools import make_readme_frames

    _assert_readme_picture(make_readme_frames.TWO_STAGE_OUT, lambda caption, seed: two_stage(caption, seed)[1])


def _assert_readme_picture(path: Path, render) -> None:
    from PIL import Image

    from tools import make_readme_frames

    shipped = np.asarray(Image.open(path).convert("RGB"))
    zoom = make_readme_frames.ZOOM
    rendered = make_readme_frames.frame_rows(render).repeat(zoom, axis=0).repeat(zoom, axis=1)
    assert shipped.shape == rendered.shape
    assert np.abs(shipped.astype(int) - rendered).mean() < 1.0


@pytest.fixture(scope="module")
def animations(renderer):
    """F_A on 10 held-out first frames with their captions: (spec, input clip, rendered video, detection)."""
    from univg_core.mini.world import render

    rows = []
    for index, spec in enumerate(held_out_specs(10)):
        clip = render(spec, models.SIZE)
        video = renderer.animate(ANIMATION, clip[0], spec.caption, seed=index)
        rows.append((spec, clip, video, detect(video)))
    return rows


def _animation_report(animations) -> str:
    return "\n".join(f"{spec.caption!r}: {found.colour} {found.motion}, frame 0 {_psnr(video[0], clip[0]):.1f} dB"
                     for spec, clip, video, found in animations)


def test_animation_keeps_the_first_frame_and_moves_the_object(animations):
    """Frame 0 is the input (through the VAE: at least 25 dB) and in at least 8 of the 10 videos
    the object's centroid travels (the detector's MIN_TRAVEL, a tenth of the frame)."""
    report = _animation_report(animations)
    print(report)
    assert min(_psnr(video[0], clip[0]) for _, clip, video, _ in animations) >= 25.0, report
    assert sum(found.motion not in (None, "still") for *_, found in animations) >= 8, report


def test_animation_moves_the_object_the_captions_way(animations):
    """F_A after 4800 steps: 10 of the 10 (after 3200 steps: 7, after 1600: 4)."""
    report = _animation_report(animations)
    assert sum(found.motion == spec.motion for spec, _, _, found in animations) >= 8, report


def test_animation_keeps_the_objects_colour(animations):
    """F_A after 4800 steps: 9 of the 10 (a blue square on a light background turns purple; after
    1600 and 3200 steps 8, a tiny growing triangle lost too)."""
    report = _animation_report(animations)
    assert sum(found.colour == spec.colour for spec, _, _, found in animations) >= 9, report


def test_text_guidance_from_t_300_keeps_the_colour_full_guidance_shifts(renderer, animations):
    """The samplers' guidance_from_t: with w_T 7.5 only at t >= 300, F_A keeps all 10 colours (the
    blue square on light too, which full guidance turns purple: in the Mini VAE's latents guidance
    walks the hue) and still moves the objects the caption's way (measured: 10, 10 and 10)."""
    rows, kept, way, blue = [], 0, 0, []
    for index, (spec, clip, _, found) in enumerate(animations):
        late = detect(renderer.animate(ANIMATION, clip[0], spec.caption, seed=index,
                                       guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T))
        kept += late.colour == spec.colour
        way += late.motion == spec.motion
        if spec.colour == "blue":
            blue.append(late.colour)
        rows.append(f"{spec.caption!r}: guided at every step {found.colour} {found.motion}, "
                    f"from t = 300 {late.colour} {late.motion}")
    report = "\n".join(rows)
    print(report)
    assert kept > sum(found.colour == spec.colour for spec, _, _, found in animations), report
    assert way >= 8 and blue and all(colour == "blue" for colour in blue), report


SR_SHORTFALL = ("issue 36: F_SR in the SR VAE's latents moves and reshapes the object where it draws the "
                "world's pattern (8 validation clips at t_n 700, text weight 3: content kept in 1, the pattern in 50% "
                "of frames; its training curve is flat from 400 to 2400 steps; docs/univg_mini_findings.md)")


@pytest.mark.xfail(strict=True, reason=SR_SHORTFALL)
def test_super_resolution_adds_the_worlds_detail_and_keeps_the_content(renderer):
    """Issue 36 on 6 test clips (seed 200002, clean 64x64 renders in, textured 128x128 truth): the
    shape's pattern drawn in at least 80% of frames, at least twice bicubic's energy above 64 px's
    Nyquist frequency, the detector's colour, shape and motion of the output's 2x area downsample
    those of the input in at least 5 of 6 clips, that downsample within 30 dB PSNR of the input."""
    from univg_core.mini.sr_eval import TEST_SEED, SRSetting, evaluate_sr

    scores = evaluate_sr(renderer, SR, SRSetting(text_weight=models.SR_TEXT_WEIGHT), clips=6, seed=TEST_SEED)
    ours, bicubic = scores["sr"], scores["bicubic"]
    assert ours["texture_right"] >= 0.8, scores
    assert ours["energy_above_nyquist_share"] >= 2 * bicubic["energy_above_nyquist_share"], scores
    assert ours["content_kept"] >= 5 / 6 and ours["content_psnr"] >= 30, scores


BASE_IMAGE = WEIGHTS / models.BASE_IMAGE_FILE


@pytest.fixture(scope="module")
def image_to_videos():
    """The image-reading F_B with w_T 0 and w_I 7.5 on 10 held-out first frames, 25 DDIM steps:
    (spec, what the detector reads)."""
    from univg_core.mini.world import render

    text_file, vision_file = towers.write_towers(TOWERS, TOWERS)
    renderer = MiniRenderer(text_file, WEIGHTS / models.VAE_FILE, image_encoder=vision_file)
    return [(spec, detect(renderer.text_to_video(BASE_IMAGE, "", index, text_weight=0.0,
                                                 image=render(spec, models.SIZE)[0], image_weight=7.5)))
            for index, spec in enumerate(held_out_specs(10))]


def _image_report(image_to_videos) -> str:
    rows = [f"{spec.colour} {spec.shape} on {spec.background}: {found.colour} {found.shape} on {found.background}"
            for spec, found in image_to_videos]
    kept = sum(found.colour == spec.colour for spec, found in image_to_videos)
    backgrounds = sum(found.background == spec.background for spec, found in image_to_videos)
    return "\n".join(rows) + f"\ncolour kept {kept}/10, background kept {backgrounds}/10"


def test_image_to_video_keeps_the_images_background_and_often_its_object_colour(image_to_videos):
    """Trained with the object's cells weighing 5 in its loss: background 10 of 10, the object's
    colour 5 of 10 (the same recipe with the plain loss: 0 of 10)."""
    report = _image_report(image_to_videos)
    print(report)
    assert sum(found.background == spec.background for spec, found in image_to_videos) >= 8, report
    assert sum(found.colour == spec.colour for spec, found in image_to_videos) >= 4, report


@pytest.mark.xfail(strict=True, reason="issue 14: image-to-video keeps the image's object colour; the image-reading "
                   "F_B (3000 steps on 240 clips, object cells weighing 5) keeps it in 5 of 10")
def test_image_to_video_keeps_the_images_object_colour(image_to_videos):
    assert sum(found.colour == spec.colour for spec, found in image_to_videos) >= 9, _image_report(image_to_videos)


def test_f_a_with_bf16_weights_for_50_steps_animates_as_in_fp32(renderer):
    """UniVG Mini's F_A over 50 DDIM steps with its weights in bf16 (computing in bf16; GroupNorm
    in fp32): the example image animated within half a level of 255 of the fp32 video on average, the
    detector reading the same red object moving right (docs/gpu_and_memory.md)."""
    import torch

    from univg_core.mini.world import EXAMPLE_CAPTION, example_image

    videos = {dtype: renderer.animate(ANIMATION, example_image(), EXAMPLE_CAPTION, 0, steps=50, dtype=dtype,
                                      guidance_from_t=models.ANIMATION_GUIDANCE_FROM_T)
              for dtype in (torch.float32, torch.bfloat16)}
    full, bf16 = videos[torch.float32].astype(float), videos[torch.bfloat16].astype(float)
    difference = np.abs(bf16 - full).mean()
    print(f"F_A bf16 vs fp32, 50 steps: {difference:.2f} levels on average")
    assert renderer.model(ANIMATION, torch.bfloat16).unet.dtype == torch.bfloat16
    assert difference < 0.5, difference
    read, read_bf16 = detect(videos[torch.float32]), detect(videos[torch.bfloat16])
    assert (read_bf16.colour, read_bf16.motion) == (read.colour, read.motion) == ("red", "right"), (read, read_bf16)
