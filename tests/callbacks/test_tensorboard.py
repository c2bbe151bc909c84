"""A short imitation fit with every callback writes the TensorBoard scalars, figures, text and the chosen n."""

import math

import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_ssd.callbacks import (
    AcceptanceFigures,
    ChooseLayerCallback,
    DraftLengthSweep,
    DraftSamples,
    TrainThroughput,
)
from lightning_ssd.callbacks.samples import LEGEND
from lightning_ssd.models import ImitationModule
from tests.models.helpers import tiny_data, tiny_trainer


def test_fit_writes_figures_text_sweep_and_chosen_n(tmp_path):
    name = "tiny-blip2-opt"
    module = ImitationModule(name, n=2, max_new_tokens=6, num_samples=2)
    callbacks = [AcceptanceFigures(), DraftSamples(max_samples=2), TrainThroughput(warmup_batches=0),
                 DraftLengthSweep(draft_lengths=[1, 3], max_batches=1, stages=["fit"]),
                 ChooseLayerCallback(output=str(tmp_path / "chosen_n.yaml"))]
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = tiny_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=callbacks, log_every_n_steps=1)
    trainer.fit(module, tiny_data(name, num_train=4, batch_size=4))

    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert {"val/acceptance_by_position", "val/acceptance_by_step", "fit_sweep/speedup_and_accuracy"} <= set(
        tags["images"])
    assert "val/samples/text_summary" in tags["tensors"]
    text = events.Tensors("val/samples/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert text.startswith(LEGEND) and "reference:" in text and "~~" not in text
    assert {"val/ssd/tau", "val/ssd/alpha", "val/draft_imit/speedup", "train/samples_per_s",
            "val/chosen_n"} <= set(tags["scalars"])
    assert not any(t.startswith("fit_sweep/") for t in tags["scalars"])  # a step axis would read as d
    table = events.Tensors("fit_sweep/table/text_summary")[-1].tensor_proto.string_val[0].decode()
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r[0].strip() for r in rows] == ["d", "1", "3"]  # one row per d
    assert all(math.isfinite(float(r[1])) and float(r[1]) > 0 for r in rows[1:])  # speedups

    chosen = yaml.safe_load((tmp_path / "chosen_n.yaml").read_text())
    assert chosen["model"]["init_args"]["n"] in (1, 2)  # [L/2] for L = 4
