"""`predict` writes its outputs as JSONL, in dataset order, also under 2-process DDP."""

import json

import torch

from lightning_ssd.cli import cli_main
from tests.models.helpers import run_cli, tiny_config, write_config


def _config(root, devices=1):
    config = tiny_config(root, backbone="tiny-llava", devices=devices, strategy="ddp" if devices > 1 else "auto",
                         logger=False, model_args={"max_new_tokens": 5},
                         data_args={"task": "caption", "num_test": 5, "eval_batch_size": 1})
    return config


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_writes_one_line_per_sample_in_order(tmp_path):
    path = write_config(tmp_path / "c.yaml", _config(tmp_path / "run"))
    torch.set_num_threads(1)
    cli_main(["predict", "--config", str(path)])
    rows = _rows(tmp_path / "run" / "predictions.jsonl")
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert {"id", "image", "prompt", "text", "tokens", "tau", "accepted"} <= set(rows[0])
    assert all(1 <= len(r["tokens"]) <= 5 and sum(r["accepted"]) + len(r["accepted"]) + 1 >= len(r["tokens"])
               for r in rows)
    # a chosen output file, replaced whole on a rerun
    out = tmp_path / "mine" / "p.jsonl"
    cli_main(["predict", "--config", str(path), "--predictions.output", str(out)])
    assert _rows(out) == rows
    assert sorted(p.name for p in out.parent.iterdir()) == ["p.jsonl"]


def test_ddp_predict_merges_the_ranks_in_dataset_order(tmp_path):
    single = write_config(tmp_path / "single.yaml", _config(tmp_path / "single"))
    ddp = write_config(tmp_path / "ddp.yaml", _config(tmp_path / "ddp", devices=2))
    for config in (single, ddp):
        done = run_cli(tmp_path, "predict", "--config", str(config), timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
    # 5 samples on 2 ranks: the sampler repeats one to even them out; the merge drops the copy
    assert _rows(tmp_path / "ddp" / "predictions.jsonl") == _rows(tmp_path / "single" / "predictions.jsonl")
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if "predictions" in p.name) == ["predictions.jsonl"]
