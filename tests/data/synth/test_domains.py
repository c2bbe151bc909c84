import numpy as np
import pytest

from lightning_ssd.data.synth.benchmark import SyntheticConfig, generate_item
from lightning_ssd.data.synth.domains import (
    NEAR_COLOUR_PAIRS,
    NEAR_PATTERN_PAIRS,
    OUT_COLOURS,
    OUT_PATTERNS,
    OUT_SHAPES,
    sample_domain_scene,
    scene_domain,
)
from lightning_ssd.data.synth.scene import Group, Scene
from lightning_ssd.data.synth.writer import _marker


def _scene(*groups: tuple[str, str], pattern: str = "plain") -> Scene:
    return Scene(tuple(Group(s, c, "small", ((i, 0),)) for i, (s, c) in enumerate(groups)), pattern, (50, 50, 50))


@pytest.mark.parametrize(("scene", "domain"), [
    (_scene(("circle", "blue")), "in"),
    (_scene(("circle", "red")), "near"),  # known shape and colour, never together in training
    (_scene(("square", "blue"), pattern="striped"), "near"),  # a known square on a background it never had
    (_scene(("square", "orange")), "out"),  # a colour never seen
    (_scene(("diamond", "blue")), "out"),  # a shape never seen
    (_scene(("circle", "blue"), pattern="checkered"), "out"),  # a background never seen
    (_scene(("circle", "red"), ("diamond", "blue")), "out"),  # out wins over near
])
def test_scene_domain(scene: Scene, domain: str) -> None:
    assert scene_domain(scene) == domain


@pytest.mark.parametrize("domain", ["in", "near", "out"])
def test_sampled_scenes_are_of_their_domain(domain: str) -> None:
    rng = np.random.default_rng(3)
    assert all(scene_domain(sample_domain_scene(rng, domain)) == domain for _ in range(100))


def test_training_never_sees_held_out_attributes_or_pairs() -> None:
    config = SyntheticConfig(num_train=300, test_domain="out")
    for i in range(config.num_train):
        scene = generate_item(config, "train", i).scene
        for g in scene.groups:
            assert g.colour not in OUT_COLOURS and g.shape not in OUT_SHAPES
            assert (g.shape, g.colour) not in NEAR_COLOUR_PAIRS and (g.shape, scene.pattern) not in NEAR_PATTERN_PAIRS
        assert scene.pattern not in OUT_PATTERNS


def test_splits_share_training_data_and_differ_in_test() -> None:
    configs = {d: SyntheticConfig(num_train=5, num_test=5, test_domain=d) for d in ("in", "near", "out")}
    trains = {d: [generate_item(c, "train", i).scene for i in range(5)] for d, c in configs.items()}
    assert trains["in"] == trains["near"] == trains["out"]
    for d, c in configs.items():
        assert all(scene_domain(generate_item(c, "test", i).scene) == d for i in range(5))


def test_default_benchmark_is_unchanged() -> None:
    assert not {"test_domain", "train_domain"} & set(_marker(SyntheticConfig())["config"])
    with pytest.raises(ValueError, match="test_domain"):
        SyntheticConfig(test_domain="far")
    with pytest.raises(ValueError, match="train_domain needs test_domain"):
        SyntheticConfig(train_domain="out")


def test_a_shifted_fine_tune_trains_on_its_domain() -> None:
    config = SyntheticConfig(num_train=5, test_domain="out", train_domain="out")
    assert all(scene_domain(generate_item(config, split, i).scene) == "out" for split in ("train", "val", "test")
               for i in range(5))
