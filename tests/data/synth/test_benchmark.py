import numpy as np

from lightning_ssd.data.synth.benchmark import SyntheticConfig, generate_item, generate_split
from lightning_ssd.data.synth.scene import COLOURS


def test_same_seed_same_item_other_seed_other_item():
    config = SyntheticConfig(seed=5)
    a, b = generate_item(config, "val", 3), generate_item(config, "val", 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert (a.captions, a.questions, a.dialog, a.description) == (b.captions, b.questions, b.dialog, b.description)
    c = generate_item(SyntheticConfig(seed=6), "val", 3)
    assert c.image.tobytes() != a.image.tobytes()


def test_item_does_not_depend_on_split_sizes():
    small, large = SyntheticConfig(num_train=3), SyntheticConfig(num_train=50)
    assert generate_split(small, "train")[2].image.tobytes() == generate_split(large, "train")[2].image.tobytes()
    assert generate_item(small, "train", 0).image_id != generate_item(small, "val", 0).image_id


def test_captions_follow_the_pixels():
    # Every named colour is drawn in the image, and no other object colour is.
    for index in range(40):
        item = generate_item(SyntheticConfig(), "train", index)
        pixels = {tuple(p) for p in np.asarray(item.image).reshape(-1, 3)}
        drawn = {name for name, rgb in COLOURS.items() if rgb in pixels}
        named = {w for w in " ".join(item.captions).split() if w in COLOURS}
        assert named == drawn == {g.colour for g in item.scene.groups}


def test_two_hundred_images_generate():
    items = generate_split(SyntheticConfig(num_val=200, image_size=48), "val")
    assert len(items) == 200 and items[-1].image.size == (48, 48)
    assert len({it.image_id for it in items}) == 200
    assert all(len(it.captions) == 5 and len(it.questions) == 3 and len(it.dialog) == 5 for it in items)
