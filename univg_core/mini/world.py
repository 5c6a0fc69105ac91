"""The procedural video world UniVG Mini is trained on: one object of a shape and a colour
moving over a flat background, with a caption made of the same attributes and the ground
truth (object, colour, position and size per frame) kept for scoring.

Everything is drawn from numpy's PCG64 with a seed and rendered in float64 numpy, so a clip
is the same bytes on any machine. Geometry is in frame units (0..1, y down), so one clip
renders at any resolution: 64x64 for the base model, 128x128 as super-resolution truth.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 50, 50),
    "green": (50, 190, 70),
    "blue": (60, 100, 235),
    "yellow": (240, 210, 50),
    "purple": (170, 70, 210),
}
BACKGROUNDS = {"dark": (25, 25, 35), "gray": (128, 128, 128), "light": (230, 230, 220)}
MOTIONS = ("left", "right", "up", "down", "growing")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
TRAVEL = 0.36  # frame widths an object moves over a clip
RADIUS = (0.11, 0.15)  # moving objects, in frame widths
GROWTH = (0.07, 0.2)  # a growing object's radius from the first to the last frame
SUPERSAMPLE = 4
# Super-resolution detail: at twice the base size each shape's surface carries a pattern that
# alternates pixel by pixel (zero over every aligned 2x2 block, so a 2x area downsample removes it)
TEXTURES = {"circle": "checker", "square": "vertical", "triangle": "horizontal"}
TEXTURE_AMPLITUDE = 48  # levels of 255, less where a colour channel is nearer its bound


@dataclass(frozen=True)
class ClipSpec:
    """Everything that defines a clip; `centres` and `radii` are per frame, in frame units."""

    shape: str
    colour: str
    background: str
    motion: str
    centres: tuple[tuple[float, float], ...]
    radii: tuple[float, ...]
    seed: int = 0
    index: int = 0

    @property
    def frames(self) -> int:
        return len(self.centres)

    @property
    def caption(self) -> str:
        return caption_for(self.shape, self.colour, self.motion, self.background)

    def to_json(self) -> dict:
        data = asdict(self)
        data["caption"] = self.caption
        return data


def caption_for(shape: str, colour: str, motion: str, background: str) -> str:
    action = "growing" if motion == "growing" else f"moving {motion}"
    return f"a {colour} {shape} {action} on a {background} background"


def attribute_grid() -> list[tuple[str, str, str, str]]:
    """Every (shape, colour, background, motion) the world has: 3 x 5 x 3 x 5 = 225."""
    return list(itertools.product(SHAPES, COLOURS, BACKGROUNDS, MOTIONS))


def make_spec(shape: str, colour: str, background: str, motion: str, frames: int, rng: np.random.Generator,
              seed: int = 0, index: int = 0) -> ClipSpec:
    """Positions and sizes for one clip; the object stays inside the frame throughout."""
    if frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {frames}")
    steps = np.linspace(0.0, 1.0, frames)
    if motion == "growing":
        radii = GROWTH[0] + (GROWTH[1] - GROWTH[0]) * steps
        margin = GROWTH[1] + 0.02
        centre = rng.uniform(margin, 1 - margin, size=2)
        centres = np.repeat(centre[None], frames, axis=0)
    else:
        radius = rng.uniform(*RADIUS)
        radii = np.full(frames, radius)
        direction = np.array(DIRECTIONS[motion])
        travel = TRAVEL * rng.uniform(0.85, 1.15)
        margin = radius + 0.02
        start = rng.uniform(margin, 1 - margin, size=2)
        # along the motion axis, start where the whole path fits
        axis = int(np.argmax(np.abs(direction)))
        low, high = margin, 1 - margin - travel
        start[axis] = rng.uniform(low, high) if direction[axis] > 0 else 1 - rng.uniform(low, high)
        centres = start[None] + steps[:, None] * travel * direction[None]
    return ClipSpec(
        shape=shape, colour=colour, background=background, motion=motion,
        centres=tuple((float(x), float(y)) for x, y in centres), radii=tuple(float(r) for r in radii),
        seed=seed, index=index,
    )


def make_specs(count: int, seed: int, frames: int = 16) -> list[ClipSpec]:
    """`count` clips covering the attribute grid evenly (a seeded shuffle of it, repeated)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    grid = attribute_grid()
    specs = []
    while len(specs) < count:
        for position in rng.permutation(len(grid)):
            if len(specs) == count:
                break
            specs.append(make_spec(*grid[position], frames=frames, rng=rng, seed=seed, index=len(specs)))
    return specs


def _coverage(shape: str, centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """Fraction of each pixel inside the shape, [size, size] float64 (SUPERSAMPLE^2 samples a pixel)."""
    samples = (np.arange(size * SUPERSAMPLE) + 0.5) / (size * SUPERSAMPLE)
    x, y = np.meshgrid(samples, samples)
    cx, cy = centre
    dx, dy = x - cx, y - cy
    if shape == "circle":
        inside = dx**2 + dy**2 <= radius**2
    elif shape == "square":
        half = radius * 0.9
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "triangle":
        # apex up; the three edges as half-planes
        top, bottom, half_base = -radius, radius * 0.8, radius * 1.05
        slope = half_base / (bottom - top)
        inside = (dy <= bottom) & (np.abs(dx) <= (dy - top) * slope)
    else:
        raise ValueError(f"unknown shape {shape!r}; the world has {SHAPES}")
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def texture_pattern(kind: str, height: int, width: int) -> np.ndarray:
    """+-1 per pixel [height, width]: `checker` (x + y), `vertical` stripes (x), `horizontal` (y)."""
    y, x = np.mgrid[0:height, 0:width]
    phase = {"checker": x + y, "vertical": x, "horizontal": y}[kind]
    return 1.0 - 2.0 * (phase % 2)


def texture_amplitude(colour: str) -> np.ndarray:
    """Per channel: TEXTURE_AMPLITUDE, or less so the colour +- it stays in [0, 255]."""
    rgb = np.array(COLOURS[colour], dtype=np.float64)
    return np.minimum(TEXTURE_AMPLITUDE, np.minimum(rgb, 255 - rgb))


def render(spec: ClipSpec, size: int = 64, textured: bool = False) -> np.ndarray:
    """The clip as uint8 frames [T, size, size, 3]. textured: the shape's pattern on the object
    (TEXTURES), weighted per aligned 2x2 block by the block's mean coverage, so each block's
    mean is the untextured render's and a 2x area downsample gives the clip at size / 2."""
    if textured and size % 2:
        raise ValueError(f"a textured clip needs an even size, got {size}")
    background = np.array(BACKGROUNDS[spec.background], dtype=np.float64)
    colour = np.array(COLOURS[spec.colour], dtype=np.float64)
    if textured:
        pattern = texture_pattern(TEXTURES[spec.shape], size, size)[..., None] * texture_amplitude(spec.colour)
    frames = np.empty((spec.frames, size, size, 3), dtype=np.uint8)
    for index, (centre, radius) in enumerate(zip(spec.centres, spec.radii)):
        alpha = _coverage(spec.shape, centre, radius, size)
        values = background * (1 - alpha[..., None]) + colour * alpha[..., None]
        if textured:
            block = alpha.reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3)).repeat(2, 0).repeat(2, 1)
            values = values + pattern * block[..., None]
        frames[index] = np.rint(np.clip(values, 0, 255)).astype(np.uint8)
    return frames


# The first frame the image workflows animate with UniVG Mini (the repository ships it as
# workflows/univg_mini_example.png): a red circle left of centre on the dark background,
# room to move right.
EXAMPLE_CAPTION = caption_for("circle", "red", "right", "dark")
EXAMPLE_IMAGE_FILE = "univg_mini_example.png"


EXAMPLE_LAST_IMAGE_FILE = "univg_mini_example_last.png"
EXAMPLE_START, EXAMPLE_RADIUS = (0.3, 0.52), 0.13


def example_image(size: int = 64, last: bool = False) -> np.ndarray:
    """uint8 [size, size, 3]: the example clip's first frame, or (`last`) its last, where the
    circle has moved right by the world's TRAVEL."""
    x, y = EXAMPLE_START
    centre = (x + TRAVEL, y) if last else EXAMPLE_START
    spec = ClipSpec(shape="circle", colour="red", background="dark", motion="right",
                    centres=(centre, centre), radii=(EXAMPLE_RADIUS, EXAMPLE_RADIUS))
    return render(spec, size)[0]
