"""2-process CPU DDP (gloo) imitation fit against a single process with the same global batch."""

import csv

import pytest
import torch

from tests.models.helpers import run_cli, tiny_config, write_config

SYNCED = ("val/ssd/tau", "val/ssd/alpha", "val/ssd/accuracy", "val/full/accuracy", "val/draft_imit/accuracy",
          "val/ssd_identical", "val/loss")


def _fit(tmp_path, name, devices, batch_size):
    root = tmp_path / name
    config = tiny_config(root, max_epochs=3, devices=devices, strategy="ddp" if devices > 1 else "auto",
                         log_every_n_steps=1, model_args={"lr": 1e-2, "warmup_steps": 0, "max_new_tokens": 6},
                         data_args={"num_train": 4, "num_val": 4, "batch_size": batch_size, "eval_batch_size": 1})
    config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(root)}}
    done = run_cli(tmp_path, "fit", "--config", str(write_config(tmp_path / f"{name}.yaml", config)), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    with open(next(root.glob("lightning_logs/version_*/metrics.csv"))) as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/ssd/tau")]
    return state, rows[-1]


def test_ddp_matches_single_process(tmp_path):
    # VQA answers are one word + eos: every sample has 2 target tokens, so the mean over each rank's tokens,
    # averaged by DDP, equals the mean over the global batch; 4 samples = one global batch per epoch.
    single_state, single_val = _fit(tmp_path, "single", devices=1, batch_size=4)
    ddp_state, ddp_val = _fit(tmp_path, "ddp", devices=2, batch_size=2)
    assert set(single_state) == set(ddp_state)
    for key, value in single_state.items():
        torch.testing.assert_close(ddp_state[key], value, rtol=1e-4, atol=1e-5, msg=key)
    # each rank decodes half the validation set: equal values mean the metrics were reduced over both halves
    for key in SYNCED:
        assert float(ddp_val[key]) == pytest.approx(float(single_val[key]), rel=1e-4, abs=1e-6), key
    assert float(ddp_val["val/num_sequences"]) == float(single_val["val/num_sequences"]) == 4
    assert float(ddp_val["val/ssd_identical"]) == 1.0


def _choose_n(tmp_path, name, devices):
    root = tmp_path / name
    config = tiny_config(root, module="FineTuneModule", backbone="tiny-llava", devices=devices,
                         strategy="ddp" if devices > 1 else "auto", logger=False,
                         model_args={"eval_modes": ["full"], "max_new_tokens": 2},
                         data_args={"num_val": 4, "eval_batch_size": 1})
    config["trainer"]["callbacks"] = [{"class_path": "lightning_ssd.callbacks.ChooseLayerCallback",
                                       "init_args": {"output": str(root / "n.yaml"), "rule": "one_se"}}]
    done = run_cli(tmp_path, "validate", "--config", str(write_config(tmp_path / f"{name}.yaml", config)),
                   timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return (root / "n.yaml").read_text()


def test_ddp_choice_of_n_sums_the_statistics_of_both_ranks(tmp_path):
    single = _choose_n(tmp_path, "single", devices=1)
    assert "chosen on 4 validation samples" in single
    assert _choose_n(tmp_path, "ddp", devices=2) == single
