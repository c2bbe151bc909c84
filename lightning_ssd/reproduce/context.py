"""What the report is written from: the settings, every seed's layout, and which hooks could not run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning_ssd.reproduce.layout import Layout
from lightning_ssd.reproduce.results import read_record
from lightning_ssd.reproduce.settings import Settings


@dataclass(frozen=True)
class ReportContext:
    """Inputs of the report.

    Attributes:
        settings: the reproduction's sizes and values.
        layouts: one per seed, in the order of --seeds.
        out: the report folder.
        missing: hook rows ("layerskip", "kangaroo") that could not run, with the reason.
        command: the command line, for the README.
        timings: path of timings.json.
    """

    settings: Settings
    layouts: tuple[Layout, ...]
    out: Path
    missing: dict[str, str]
    command: str
    timings: Path

    @property
    def first(self) -> Layout:
        return self.layouts[0]

    def finetune(self, layout: Layout | None = None) -> dict:
        record = read_record((layout or self.first).finetune_record)
        if record is None:
            raise FileNotFoundError(f"{(layout or self.first).finetune_record} is missing: the fine-tuning stage "
                                    "has not run")
        return record

    @property
    def n_label(self) -> str:
        """Table 1's n: one number when every seed chose it, else each seed's ("4, 2, 3 for seeds 0, 1, 2")."""
        ns = [int(self.finetune(layout)["n"]) for layout in self.layouts]
        if len(set(ns)) == 1:
            return str(ns[0])
        return f"{', '.join(map(str, ns))} for seeds {', '.join(str(layout.seed) for layout in self.layouts)}"

    @property
    def num_layers(self) -> int:
        return int(self.finetune()["L"])
