"""Where each stage of one seed writes: one folder per seed, one per table row or figure run below it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Table 1's rows of the loss ablation: (row key, folder, the imitation stage's overrides)
LOSS_ROWS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ours_ce", "ce_only", ("--model.init_args.w_cs", "0", "--model.init_args.w_kl", "0")),
    ("ours_cs", "cs", ("--model.init_args.w_kl", "0")),
    ("ours_cs_kd", "cs_kd", ()),
)
MAIN_ROW = "cs_kd"  # CE + CS + KD, the default: Table 1's main row, Table 5's concatenation, the figures' draft
MAIN_FUSION = "concat"
FIGURE_RUNS: tuple[str, ...] = ("frozen", "joint", "mixed")


@dataclass(frozen=True)
class Layout:
    """The files of one seed's stages under `root/seed<seed>`."""

    root: Path
    seed: int

    @property
    def folder(self) -> Path:
        return self.root / f"seed{self.seed}"

    @property
    def finetune(self) -> Path:
        return self.folder / "finetune"

    @property
    def finetune_record(self) -> Path:
        return self.finetune / "stage.json"

    @property
    def backbone(self) -> Path:
        return self.finetune / "backbone"

    def row(self, table: str, name: str) -> Path:
        """Folder of one row's runs: `imitation/` (or `finetune/`) and `test/` below it."""
        return self.folder / table / name

    def imitation_record(self, table: str, name: str) -> Path:
        return self.row(table, name) / "imitation" / "stage.json"

    def checkpoint(self, table: str, name: str) -> Path:
        return self.row(table, name) / "imitation" / "checkpoints" / "last.ckpt"

    def test_metrics(self, table: str, name: str) -> Path:
        return self.row(table, name) / "test" / "metrics.json"

    @property
    def draft_verify(self) -> Path:
        return self.row("table1", "draft_verify") / "metrics.json"

    @property
    def layerskip_record(self) -> Path:
        return self.row("table1", "layerskip") / "finetune" / "stage.json"

    @property
    def confidences(self) -> Path:
        return self.folder / "table6" / "confidences.json"

    def lambda_record(self, lam: str) -> Path:
        return self.folder / "table6" / f"lambda_{lam.replace('/', '_over_')}.json"

    @property
    def speedup_rule_record(self) -> Path:
        return self.folder / "table6" / "speedup_rule.json"

    @property
    def sweep(self) -> Path:
        return self.folder / "figures" / "sweep.json"

    def history(self, run: str) -> Path:
        return self.folder / "figures" / run / "history.json"
