"""Scene sampling for the embedded synthetic benchmark: what is in each image, before any pixel or word.

A scene is one or two *groups* of identical objects (same shape, colour and size), each group of 1-3
instances (4 at most in all), placed in distinct cells of a 3x3 grid around the group's anchor cell,
on a background of one pattern. Groups never share a shape or a colour, so "the red circle" and
"what colour is the circle?" always name exactly one group.
"""

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 95, 235),
    "yellow": (245, 225, 40),
    "purple": (160, 55, 210),
    "orange": (250, 140, 25),
    "white": (245, 245, 245),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond")
PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses",
                           "diamond": "diamonds"}
SIZES: tuple[str, ...] = ("small", "large")
PATTERNS: tuple[str, ...] = ("plain", "gradient", "striped", "noisy", "checkered")
COUNT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
# Position of a group on the 3x3 grid, as a short answer and as a phrase for captions.
POSITIONS: dict[str, str] = {"left": "on the left", "right": "on the right", "top": "at the top",
                             "bottom": "at the bottom", "middle": "in the middle"}
GRID = 3
MAX_OBJECTS = 4


@dataclass(frozen=True)
class Group:
    """Identical objects sharing shape, colour and size; ``cells`` are (row, col) on the 3x3 grid."""

    shape: str
    colour: str
    size: str
    cells: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        return len(self.cells)

    @property
    def position(self) -> str:
        """Where the group sits: the dominant direction of its mean cell from the grid centre."""
        rows, cols = zip(*self.cells, strict=True)
        dy, dx = float(np.mean(rows)) - 1.0, float(np.mean(cols)) - 1.0
        if max(abs(dx), abs(dy)) < 0.5:
            return "middle"
        if abs(dx) >= abs(dy):
            return "left" if dx < 0 else "right"
        return "top" if dy < 0 else "bottom"


@dataclass(frozen=True)
class Scene:
    """Everything the pixels and the texts of one image are made from."""

    groups: tuple[Group, ...]
    pattern: str
    background_rgb: tuple[int, int, int]

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one scene; every random choice comes from ``rng``."""
    n_groups = int(rng.integers(1, 3))
    shapes = rng.choice(len(SHAPES), size=n_groups, replace=False)
    colours = rng.choice(len(COLOURS), size=n_groups, replace=False)
    counts = [int(rng.integers(1, 4)) for _ in range(n_groups)]
    while sum(counts) > MAX_OBJECTS:
        counts[int(np.argmax(counts))] -= 1
    free = [(r, c) for r in range(GRID) for c in range(GRID)]
    groups = []
    for shape_i, colour_i, count in zip(shapes, colours, counts, strict=True):
        anchor = free[int(rng.integers(len(free)))]
        # Nearest free cells to the anchor, ties broken at random, keep a group together.
        jitter = rng.random(len(free))
        order = sorted(range(len(free)), key=lambda i: (abs(free[i][0] - anchor[0]) + abs(free[i][1] - anchor[1]),
                                                        jitter[i]))
        cells = tuple(sorted(free[i] for i in order[:count]))
        free = [cell for cell in free if cell not in cells]
        groups.append(Group(SHAPES[shape_i], list(COLOURS)[colour_i], SIZES[int(rng.integers(len(SIZES)))], cells))
    # Dark, desaturated backgrounds keep every object colour (white and yellow included) visible.
    background = tuple(int(v) for v in rng.integers(20, 100, size=3))
    return Scene(tuple(groups), PATTERNS[int(rng.integers(len(PATTERNS)))], background)
