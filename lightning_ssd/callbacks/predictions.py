"""`predict` writes its outputs: one JSONL line per sample, in dataset order, written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_ssd.files import atomic_open


def _write_atomically(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """JSON for what rows may hold besides plain types (NaN tau of a plain decoder, paths, tensors)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


class PredictionWriter(BasePredictionWriter):
    """Writes what `predict_step` returns (lists of row dicts) to a JSONL file at the end of `predict`.

    Under DDP each rank writes its part next to the output; rank 0 merges the parts in dataset order (by each row's
    "index"; the copies a distributed sampler adds to even out the ranks are dropped) and replaces the output in one
    rename, so an interrupted run never leaves a half-written file.

    Args:
        output: the JSONL file; None writes `<trainer.default_root_dir>/predictions.jsonl`.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.written: Path | None = None

    def path(self, trainer: Trainer) -> Path:
        return Path(self.output) if self.output else Path(trainer.default_root_dir) / "predictions.jsonl"

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        rows = [_finite(row) for batch in _batches(predictions) for row in batch]
        path = self.path(trainer)
        if trainer.world_size == 1:
            _write_atomically(path, _in_order(rows))
        else:
            part = path.with_name(f".{path.name}.part{trainer.global_rank}")
            _write_atomically(part, rows)
            trainer.strategy.barrier("prediction_parts")
            if trainer.is_global_zero:
                parts = [path.with_name(f".{path.name}.part{r}") for r in range(trainer.world_size)]
                merged = [json.loads(line) for p in parts for line in p.read_text(encoding="utf-8").splitlines()]
                _write_atomically(path, _in_order(merged))
                for p in parts:
                    p.unlink()
            trainer.strategy.barrier("prediction_merged")
        self.written = path
        if trainer.is_global_zero:
            print(f"predictions: wrote {path}")


def _batches(predictions: Any) -> list[list[dict[str, Any]]]:
    """Lightning gives a list of batch outputs, or one such list per dataloader."""
    if predictions and isinstance(predictions[0], list) and predictions[0] and isinstance(predictions[0][0], list):
        return [batch for loader in predictions for batch in loader]
    return list(predictions)


def _in_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if any(row.get("index", -1) < 0 for row in rows):
        return rows  # rows that do not say where they came from keep the order they were made in
    unique = {row["index"]: row for row in rows}
    return [unique[i] for i in sorted(unique)]
