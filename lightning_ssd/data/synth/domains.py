"""In-, near- and out-of-domain scenes: the synthetic world's analogue of NoCaps' zero-shot splits.

NoCaps tests a COCO-trained captioner on images whose objects are seen in training (in-domain), partly new
(near-domain) or unseen (out-of-domain). Here the split is defined on scene attributes, with training restricted
to in-domain scenes:

- held-out attributes (`OUT_COLOURS`, `OUT_SHAPES`, `OUT_PATTERNS`): never in a training scene;
- held-out combinations (`NEAR_PAIRS`): (shape, colour) pairs and (shape, pattern) pairs of known attributes that
  never appear together in a training scene;
- **in**: no held-out attribute and no held-out combination (the training distribution);
- **near**: no held-out attribute, but at least one held-out combination (known objects in new combinations or on
  new backgrounds);
- **out**: at least one held-out attribute (an object, colour or background never seen in training).

Every scene falls in exactly one domain (`scene_domain`). Scenes of a domain are drawn by rejection from the
unrestricted sampler, with the item's own generator, so an item stays a pure function of (seed, split, index).
"""

import numpy as np

from lightning_ssd.data.synth.scene import Scene, sample_scene

DOMAINS: tuple[str, ...] = ("in", "near", "out")
OUT_COLOURS: frozenset[str] = frozenset({"orange"})
OUT_SHAPES: frozenset[str] = frozenset({"diamond"})
OUT_PATTERNS: frozenset[str] = frozenset({"checkered"})
# Known objects in new combinations: a shape never seen in this colour, or never on this background.
NEAR_COLOUR_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("circle", "red"), ("square", "green"), ("triangle", "blue"), ("cross", "yellow"), ("circle", "purple")})
NEAR_PATTERN_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("square", "striped"), ("triangle", "noisy"), ("cross", "gradient")})
MAX_TRIES = 1000


def scene_domain(scene: Scene) -> str:
    """"in", "near" or "out" by the definitions of this module."""
    shapes = {g.shape for g in scene.groups}
    colours = {g.colour for g in scene.groups}
    if shapes & OUT_SHAPES or colours & OUT_COLOURS or scene.pattern in OUT_PATTERNS:
        return "out"
    pairs = {(g.shape, g.colour) for g in scene.groups}
    backgrounds = {(g.shape, scene.pattern) for g in scene.groups}
    if pairs & NEAR_COLOUR_PAIRS or backgrounds & NEAR_PATTERN_PAIRS:
        return "near"
    return "in"


def sample_domain_scene(rng: np.random.Generator, domain: str) -> Scene:
    """A scene of `domain`, drawn by rejection from `sample_scene` with `rng`."""
    if domain not in DOMAINS:
        raise ValueError(f"test_domain must be one of {list(DOMAINS)}, got {domain!r}")
    for _ in range(MAX_TRIES):
        scene = sample_scene(rng)
        if scene_domain(scene) == domain:
            return scene
    raise RuntimeError(f"no {domain}-domain scene in {MAX_TRIES} draws: the domain definitions leave it empty")
