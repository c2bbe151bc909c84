"""Cells and Markdown of the rest of the paper's tables: one row per decoder, our cells over seeds beside the
paper's transcribed values, and the sentences that compare them, worded from the measured numbers.

A row reads `test/<mode>/<score>` from each seed's task record (`task_eval.run_task_eval`). The full model's speedup
is 1 by definition; draft-only rows have no tau, alpha or identity (they are not verified).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lightning_ssd.reproduce.results import Aggregate

NAN = float("nan")
METHODS: tuple[tuple[str, str], ...] = (
    ("full", "full model"), ("draft", "draft w/o imitation"), ("draft_imit", "draft w/ imitation"),
    ("draft_verify", "Draft & Verify"), ("layerskip", "LayerSkip"), ("ssd", "ours: SSD"),
)
LAYERSKIP_MISSING = "LayerSkip's row was not run (its stage `layerskip <task>` has no record yet)"
LAYERSKIP_NOTE = ("LayerSkip: the task's fine-tuned backbone trained one epoch further with LayerSkip's recipe (layer "
                  "dropout, early-exit losses), decoded by SSD through its plain early exit at the exit its own "
                  "agreement predicts to decode fastest (its n column); its score is that backbone's own, since SSD is "
                  "lossless, and its speedup is against that backbone's plain decoding")
NEEDS_JUDGE = "needs_judge"

# The paper's values, transcribed: Table 3 (VisDial MRR; NoCaps CIDEr in / near / out; Spd.), Table 2 (MM-Vet total,
# LLaVA-Wild, Spd.), Table 9 of Appendix A.2 (VQAv2 test accuracy, Spd.) and Table 4 (CLIP-LLaMA CIDEr, Spd.).
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "full": {"MRR": 45.8, "in": 123.7, "near": 120.7, "out": 124.5, "Spd.": 1.00},
    "draft": {"MRR": 0.3, "in": 2.4, "near": 2.1, "out": 2.0, "Spd.": 2.00},
    "draft_imit": {"MRR": 23.1, "in": 60.5, "near": 58.6, "out": 61.0, "Spd.": 2.00},
    "draft_verify": {"MRR": 31.5, "in": 108.1, "near": 107.5, "out": 109.5, "Spd.": 1.38},
    "layerskip": {"MRR": 33.2, "in": 109.9, "near": 108.2, "out": 110.0, "Spd.": 1.45},
    "ssd": {"MRR": 43.9, "in": 122.0, "near": 119.4, "out": 123.1, "Spd.": 1.55},
}
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "full": {"MM-Vet": 28.0, "LLaVA-W": 64.8, "Spd.": 1.00}, "draft": {"MM-Vet": 0.3, "LLaVA-W": 4.6, "Spd.": 2.00},
    "draft_imit": {"MM-Vet": 15.8, "LLaVA-W": 45.2, "Spd.": 2.00},
    "draft_verify": {"MM-Vet": 22.4, "LLaVA-W": 53.9, "Spd.": 1.64},
    "layerskip": {"MM-Vet": 25.7, "LLaVA-W": 58.4, "Spd.": 1.71},
    "ssd": {"MM-Vet": 27.8, "LLaVA-W": 64.1, "Spd.": 1.85},
}
PAPER_VQA: dict[str, dict[str, float]] = {
    "full": {"VQAv2": 84.0, "Spd.": 1.00}, "draft": {"VQAv2": 8.5, "Spd.": 2.00},
    "draft_imit": {"VQAv2": 40.7, "Spd.": 2.00}, "draft_verify": {"VQAv2": 71.8, "Spd.": 1.29},
    "layerskip": {"VQAv2": 75.0, "Spd.": 1.33}, "ssd": {"VQAv2": 83.4, "Spd.": 1.39},
}
PAPER_TABLE4: dict[str, dict[str, float]] = {
    "full": {"CIDEr": 138.5, "Spd.": 1.00}, "draft": {"CIDEr": 3.1, "Spd.": 2.46},
    "draft_imit": {"CIDEr": 59.2, "Spd.": 2.46}, "draft_verify": {"CIDEr": 109.5, "Spd.": 1.49},
    "layerskip": {"CIDEr": 111.8, "Spd.": 1.45}, "ssd": {"CIDEr": 136.5, "Spd.": 1.77},
}


def value(record: dict[str, Any] | None, mode: str, key: str) -> float:
    """One seed's value of `key` for `mode` ("speedup" of the full model is 1; "identical" in percent; "length" the
    mean output length in tokens); NaN where it was not measured."""
    if record is None:
        return NAN
    m = record["metrics"]
    if key == "speedup" and mode == "full":
        return 1.0
    if key == "identical":
        found = m.get(f"test/{mode}_identical")
        return NAN if found is None else 100.0 * found
    if key == "length":
        seqs = record.get("per_sequence", {}).get(mode, [])
        return statistics.fmean(s["length"] for s in seqs) if seqs else NAN
    found = m.get(f"test/{mode}/{key}", NAN)
    return NAN if found is None else float(found)


COLLAPSED = 0.1  # distinct outputs per test image below which a backbone is taken to ignore its images


def distinct_outputs(record: dict[str, Any] | None) -> tuple[int, int] | None:
    """(distinct texts, sequences) of the full model's outputs in one seed's record; None where the record keeps no
    texts (written before they were recorded)."""
    seqs = (record or {}).get("per_sequence", {}).get("full", [])
    if not seqs or any("text" not in s for s in seqs):
        return None
    return len({s["text"] for s in seqs}), len(seqs)


def collapse_sentence(records: Sequence[dict[str, Any] | None], what: str, seeds: Sequence[int]) -> str | None:
    """A warning when a seed's full model writes nearly the same output for every image (it ignores the image):
    then a draft matches it trivially, and the block's acceptance and speedup say nothing about the method."""
    counted = [(i, found) for i, r in enumerate(records) if (found := distinct_outputs(r)) is not None]
    collapsed = [(i, k, n) for i, (k, n) in counted if k < COLLAPSED * n]
    if not collapsed:
        return None
    which = "; ".join(f"seed {seeds[i]}: {k} distinct {what} over {n} test sequences" for i, k, n in collapsed)
    return (f"**Collapsed backbone** ({which}): its full model writes a handful of outputs whatever the image, so the "
            "draft matches it trivially and this block's alpha and speedup do not measure the method. Its fine-tune "
            "did not learn to read the images; another seed, or more epochs, is needed before these rows mean "
            "anything.")


def aggregate(records: Sequence[dict[str, Any] | None], mode: str, key: str) -> Aggregate:
    return Aggregate(tuple(value(r, mode, key) for r in records))


def median(records: Sequence[dict[str, Any] | None], mode: str, key: str) -> float:
    return aggregate(records, mode, key).median


@dataclass(frozen=True)
class Col:
    """A column: ours (`key` of `value`, from the split `split`) or the paper's (`paper` key), or a fixed text."""

    header: str
    key: str | None = None
    split: str | None = None
    paper: str | None = None
    digits: int = 1
    suffix: str = ""
    text: str | None = None


def markdown(title: str, columns: Sequence[Col], records: dict[str | None, list[dict[str, Any] | None]],
             paper: dict[str, dict[str, float]], notes: Sequence[str],
             methods: Sequence[tuple[str, str]] = METHODS) -> str:
    """A table of every method's row; `records` maps a split (None: the only one) to each seed's record."""
    head = ["method", *(c.header for c in columns)]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, label in methods:
        measured = any(r is not None and f"test/{mode}/speedup" in r["metrics"] or (r is not None and mode == "full")
                       for rs in records.values() for r in rs)
        cells = []
        for c in columns:
            if c.paper is not None:
                v = paper.get(mode, {}).get(c.paper)
                cells.append("—" if v is None else f"{v:.{c.digits}f}{c.suffix}")
            elif c.text is not None:
                cells.append(c.text if measured else "—")
            else:
                cells.append(aggregate(records[c.split], mode, c.key).fmt(c.digits, c.suffix))
        if not measured:
            label += " (not run)"
        if mode == "layerskip":
            notes = [*notes, f"{LAYERSKIP_NOTE if measured else LAYERSKIP_MISSING}."]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join([*lines, "", *(f"- {n}" for n in notes), ""])


def pct(part: float, whole: float) -> str:
    return "—" if not (math.isfinite(part) and math.isfinite(whole)) or whole == 0 else f"{100 * part / whole:.0f}%"


def speed_words(ours: float, paper: float) -> str:
    """How our speedup compares with the paper's, in words."""
    if not math.isfinite(ours):
        return "was not measured"
    if ours < 1.0:
        return f"is a slowdown ({ours:.2f}x, paper {paper:.2f}x)"
    if abs(ours - paper) <= 0.1 * paper:
        return f"matches the paper's ({ours:.2f}x against {paper:.2f}x)"
    return f"is {'above' if ours > paper else 'below'} the paper's ({ours:.2f}x against {paper:.2f}x)"
