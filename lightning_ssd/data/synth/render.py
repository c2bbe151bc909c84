"""Drawing a scene: a patterned background (numpy) and flat-coloured shapes (PIL), at any square size."""

import numpy as np
from PIL import Image, ImageDraw

from lightning_ssd.data.synth.scene import COLOURS, GRID, Scene

# Object radius as a fraction of a grid cell; small and large stay apart after downscaling to 32 px.
RADIUS = {"small": 0.26, "large": 0.44}
CONTRAST = 45  # brightness step of stripes and checks over the base colour


def _background(scene: Scene, rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.asarray(scene.background_rgb, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if scene.pattern == "plain":
        shade = np.zeros((size, size), np.float32)
    elif scene.pattern == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        shade = ((np.cos(angle) * xx + np.sin(angle) * yy) / size) * 2 * CONTRAST
    elif scene.pattern == "striped":
        period = int(rng.integers(4, 9))
        coord = xx if rng.random() < 0.5 else yy
        shade = ((coord // (period / 2)) % 2) * CONTRAST
    elif scene.pattern == "checkered":
        period = int(rng.integers(6, 13))
        shade = (((xx // (period / 2)) + (yy // (period / 2))) % 2) * CONTRAST
    elif scene.pattern == "noisy":
        shade = rng.normal(0, CONTRAST / 2, size=(size, size)).astype(np.float32)
    else:
        raise ValueError(f"unknown background pattern {scene.pattern!r}")
    return np.clip(base + shade[..., None], 0, 255).astype(np.uint8)


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "cross":
        w = r * 0.38
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """An RGB image of ``size`` x ``size`` pixels; each object is jittered inside its grid cell."""
    if size < 24:
        raise ValueError(f"image_size must be at least 24 pixels for the shapes to be told apart, got {size}")
    image = Image.fromarray(_background(scene, rng, size))
    draw = ImageDraw.Draw(image)
    cell = size / GRID
    for group in scene.groups:
        r = RADIUS[group.size] * cell
        slack = max(cell / 2 - r - 1, 0.0)
        for row, col in group.cells:
            cx = (col + 0.5) * cell + rng.uniform(-slack, slack)
            cy = (row + 0.5) * cell + rng.uniform(-slack, slack)
            _draw(draw, group.shape, cx, cy, r, COLOURS[group.colour])
    return image
