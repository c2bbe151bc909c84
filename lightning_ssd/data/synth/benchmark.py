"""Generating the synthetic benchmark: every item is a pure function of (seed, split, index)."""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from lightning_ssd.data.synth import text
from lightning_ssd.data.synth.domains import DOMAINS, sample_domain_scene
from lightning_ssd.data.synth.render import render
from lightning_ssd.data.synth.scene import Scene, sample_scene

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Image ids are unique across splits: split k starts at k * ID_STRIDE + 1.
ID_STRIDE = 10_000_000


@dataclass(frozen=True)
class SyntheticItem:
    """One image with all of its texts."""

    image_id: int
    image: Image.Image
    scene: Scene
    captions: tuple[str, ...]
    questions: tuple[text.QA, ...]
    dialog: tuple[text.DialogRound, ...]
    description: str


@dataclass(frozen=True)
class SyntheticConfig:
    """What determines the benchmark's content; two equal configs generate identical data.

    ``test_domain`` None draws every scene from the whole world (the benchmark of every other experiment). "in",
    "near" or "out" restricts training and validation scenes to the in-domain ones and draws test scenes from that
    domain (``lightning_ssd.data.synth.domains``): the zero-shot splits. ``train_domain`` (with ``test_domain``
    set) draws training and validation scenes from another domain instead: a fine-tune on shifted images.
    """

    seed: int = 0
    num_train: int = 2000
    num_val: int = 200
    num_test: int = 200
    image_size: int = 64
    captions_per_image: int = 5
    questions_per_image: int = 3
    dialog_rounds: int = 5
    test_domain: str | None = None
    train_domain: str | None = None

    def __post_init__(self) -> None:
        for name in ("test_domain", "train_domain"):
            if getattr(self, name) not in (None, *DOMAINS):
                raise ValueError(f"{name} must be None or one of {list(DOMAINS)}, got {getattr(self, name)!r}")
        if self.train_domain is not None and self.test_domain is None:
            raise ValueError("train_domain needs test_domain: without it every split is the whole world")

    def domain(self, split: str) -> str | None:
        """The domain the scenes of `split` are drawn from (None: unrestricted)."""
        if self.test_domain is None:
            return None
        return self.test_domain if split == "test" else self.train_domain or "in"

    def split_size(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]


def generate_item(config: SyntheticConfig, split: str, index: int) -> SyntheticItem:
    """Item ``index`` of ``split``; independent of the other items and of the split sizes."""
    split_code = SPLITS.index(split)
    rng = np.random.default_rng([config.seed, split_code, index])
    domain = config.domain(split)
    scene = sample_scene(rng) if domain is None else sample_domain_scene(rng, domain)
    image = render(scene, rng, config.image_size)
    return SyntheticItem(
        image_id=split_code * ID_STRIDE + index + 1,
        image=image,
        scene=scene,
        captions=tuple(text.captions(scene, rng, config.captions_per_image)),
        questions=tuple(text.questions(scene, rng, config.questions_per_image)),
        dialog=tuple(text.dialog(scene, rng, config.dialog_rounds)),
        description=text.long_description(scene),
    )


def generate_split(config: SyntheticConfig, split: str) -> list[SyntheticItem]:
    return [generate_item(config, split, i) for i in range(config.split_size(split))]
