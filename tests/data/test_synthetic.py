import numpy as np
import pytest

from lightning_ssd.data.synthetic import SyntheticDataModule
from lightning_ssd.data.tokenizer import default_tokenizer

SIZES = {"num_train": 6, "num_val": 3, "num_test": 2, "image_size": 32}


@pytest.mark.parametrize("task", ["caption", "vqa", "visdial", "long"])
def test_disk_round_trip_matches_memory(tmp_path, task):
    in_memory = SyntheticDataModule(task=task, backbone="tiny-blip2-opt", **SIZES)
    on_disk = SyntheticDataModule(task=task, backbone="tiny-blip2-opt", root=str(tmp_path / "bench"), **SIZES)
    on_disk.prepare_data()
    for dm in (in_memory, on_disk):
        dm.setup("fit")
        dm.setup("test")
    for split in ("train", "val", "test"):
        mem, disk = in_memory.datasets[split], on_disk.datasets[split]
        assert len(mem) == len(disk) > 0
        for i in range(len(mem)):
            a, b = mem[i], disk[i]
            assert np.array_equal(np.asarray(a.image), np.asarray(b.image))  # PNG is lossless
            assert (a.record.sample_id, a.record.query, a.record.target, a.record.references, a.record.context,
                    a.record.history, a.record.candidates, a.record.gt_index) == (
                b.record.sample_id, b.record.query, b.record.target, b.record.references, b.record.context,
                b.record.history, b.record.candidates, b.record.gt_index)


@pytest.mark.parametrize("backbone", ["tiny-blip2-opt", "tiny-blip2-t5", "tiny-llava"])
def test_batches_for_every_family(backbone):
    dm = SyntheticDataModule(task="caption", backbone=backbone, batch_size=4, **SIZES)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 6 * 5  # one sample per (image, caption) pair
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert batch["labels"].shape[0] == 4 and (batch["labels"] != -100).any(1).all()
    val = next(iter(dm.val_dataloader()))
    assert all(len(refs) == 5 for refs in val["references"])


def test_targets_are_in_the_tiny_vocabulary():
    dm = SyntheticDataModule(task="visdial", backbone="tiny-llava", batch_size=2, **SIZES)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    tok = default_tokenizer()
    assert tok.unk_token_id not in batch["input_ids"]
    labels = batch["labels"][0]
    assert tok.decode(labels[labels != -100], skip_special_tokens=True).strip() == batch["references"][0][0]


def test_unknown_task():
    with pytest.raises(ValueError, match="task must be one of"):
        SyntheticDataModule(task="grounding", backbone="tiny-llava")
