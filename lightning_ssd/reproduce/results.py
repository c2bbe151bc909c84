"""What the stages measured, as table rows: one dictionary of numbers per seed, aggregated over seeds.

Every test-like record (`metrics.json` of a test stage, of Draft & Verify, of the sweep) holds scalars named
`test/<mode>/<score>`, the sequences that differ from the full model's under "mismatches" and, where there are
any, their float64 recheck under "float64". A row reads those of one mode (the method's output) and, optionally,
the quality of another (its draft alone). Missing values are NaN and print as a dash.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORES: tuple[str, ...] = ("BLEU-1", "BLEU-4", "CIDEr", "METEOR", "ROUGE-L")
NAN = float("nan")


@dataclass(frozen=True)
class RowSource:
    """One table row of ours.

    Attributes:
        key: the paper's row key (`paper.PaperValue.row`), or a row of ours the paper has not.
        label: our label of the method.
        files: one record per seed (test-like `metrics.json`).
        mode: the decoding mode whose output the row scores.
        draft_mode: the mode whose quality is the row's "draft" columns (None: no such column).
        missing: why the row was not run, when its records do not exist.
    """

    key: str
    label: str
    files: tuple[Path, ...]
    mode: str
    draft_mode: str | None = None
    missing: str = ""


@dataclass(frozen=True)
class Aggregate:
    """One cell over seeds: the median and the range."""

    values: tuple[float, ...]

    @property
    def finite(self) -> tuple[float, ...]:
        return tuple(v for v in self.values if math.isfinite(v))

    @property
    def median(self) -> float:
        return statistics.median(self.finite) if self.finite else NAN

    def fmt(self, digits: int = 1, suffix: str = "") -> str:
        """"41.2", or "41.2 [40.9-41.5]" (median [min-max]) where seeds differ; a dash when nothing was measured."""
        if not self.finite:
            return "—"
        text = f"{self.median:.{digits}f}{suffix}"
        if min(self.finite) != max(self.finite):
            text += f" [{min(self.finite):.{digits}f}–{max(self.finite):.{digits}f}]"
        return text


def read_record(path: Path) -> dict[str, Any] | None:
    """A stage record, None when the stage has not written it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def need_record(path: Path) -> dict[str, Any]:
    """A stage record that must exist; the error names the missing output and how to make it."""
    record = read_record(path)
    if record is None:
        raise FileNotFoundError(f"{path} is missing: the stage that writes it has not run (rerun the reproduce "
                                "command; it resumes where it stopped)")
    return record


def measure(record: dict[str, Any], mode: str, draft_mode: str | None = None) -> dict[str, float]:
    """The numbers of one row in one seed: scores, speedup, draft scores, tau, identity (%), identity in the float64
    recheck (%, NaN where float32 needed none) and n."""
    m = record["metrics"]
    out = {k: m.get(f"test/{mode}/{k}", NAN) for k in SCORES}
    out["Spd."] = 1.0 if mode == "full" else m.get(f"test/{mode}/speedup", NAN)
    out["tau"] = m.get(f"test/{mode}/tau", NAN)
    out["identical"] = 100.0 * m.get(f"test/{mode}_identical", NAN)
    exact = record.get("float64", {}).get("metrics", {})  # the recheck of a float32 difference, if one was needed
    out["identical in float64"] = 100.0 * exact.get(f"test/{mode}_identical", NAN)
    if draft_mode is not None:
        out["draft BLEU-4"] = m.get(f"test/{draft_mode}/BLEU-4", NAN)
        out["draft CIDEr"] = m.get(f"test/{draft_mode}/CIDEr", NAN)
    if mode == "full":
        out["n"] = float(record.get("L", NAN))
    elif mode == "draft_verify":
        out["n"] = float(record.get("first_skipped", NAN))
    else:
        out["n"] = float(record.get("n", NAN))
    return out


def per_seed(source: RowSource) -> list[dict[str, float] | None]:
    """The row's numbers in each seed, in the order of its files (None: that seed's record does not exist)."""
    return [None if r is None else measure(r, source.mode, source.draft_mode) for r in map(read_record, source.files)]


def collect(source: RowSource) -> dict[str, Aggregate] | None:
    """The row's cells over the seeds whose records exist; None when no seed has one."""
    seeds = [s for s in per_seed(source) if s is not None]
    if not seeds:
        return None
    return {k: Aggregate(tuple(s.get(k, NAN) for s in seeds)) for k in seeds[0]}


def median_of(cells: dict[str, Aggregate] | None, key: str) -> float:
    """The median of one cell, NaN for a row that was not run or a value not measured."""
    return cells[key].median if cells is not None and key in cells else NAN
