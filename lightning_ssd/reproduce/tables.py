"""Tables 1, 5 and 6 as Markdown: our numbers (median [range] over seeds) beside the paper's, then the notes.

Quality columns of an SSD row score its output, which is the full model's when SSD is lossless; the draft's own
quality and the identity to the full model's greedy output are separate columns, so neither hides the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lightning_ssd.reproduce.paper import paper_label, paper_value
from lightning_ssd.reproduce.results import Aggregate, RowSource, collect, per_seed

Cells = dict[str, Aggregate] | None


@dataclass(frozen=True)
class Column:
    """One column: ours (a key of `results.measure`) or the paper's (a `PaperValue.column`)."""

    header: str
    ours: str | None = None
    paper: str | None = None
    digits: int = 1
    suffix: str = ""


def paired(name: str, digits: int = 1, suffix: str = "") -> tuple[Column, Column]:
    """Our column and the paper's, side by side."""
    return Column(name, ours=name, digits=digits, suffix=suffix), Column(f"{name} (paper)", paper=name,
                                                                         digits=digits, suffix=suffix)


EXTRA_COLUMNS = (Column("draft BLEU-4", ours="draft BLEU-4"), Column("draft CIDEr", ours="draft CIDEr"),
                 Column("tau", ours="tau", digits=2), Column("identical to full model", ours="identical", suffix="%"))
SPEEDUP = paired("Spd.", 2, "x")
TABLE1_COLUMNS = (*paired("n", 0), *paired("BLEU-1"), *paired("BLEU-4"), *paired("CIDEr"),
                  Column("SPICE (paper)", paper="SPICE"), *paired("METEOR"), *paired("ROUGE-L"), *SPEEDUP,
                  *EXTRA_COLUMNS)
TABLE5_COLUMNS = (*paired("n", 0), *paired("BLEU-4"), *paired("CIDEr"), *paired("METEOR"), *SPEEDUP, *EXTRA_COLUMNS)
TABLE6_COLUMNS = (*paired("n", 0), *paired("BLEU-4"), *paired("CIDEr"), *paired("METEOR"),
                  Column("SPICE (paper)", paper="SPICE"), *SPEEDUP, *EXTRA_COLUMNS)


def _cell(column: Column, cells: Cells, source: str, group: str, key: str) -> str:
    if column.paper is not None:
        value = paper_value(source, group, key, column.paper)
        return "—" if value is None else f"{value:.{column.digits}f}{column.suffix}"
    if cells is None or column.ours not in cells:
        return "—"
    return cells[column.ours].fmt(column.digits, column.suffix)


def render(title: str, rows: list[tuple[RowSource, Cells]], columns: tuple[Column, ...], source: str, group: str,
           notes: list[str]) -> str:
    """A Markdown table: method, the paper's row label, then `columns`; the notes below it."""
    head = ["method", "paper row", *(c.header for c in columns)]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, cells in rows:
        label = row.label if cells is not None or not row.missing else f"{row.label} (not run: {row.missing})"
        paper = paper_label(source, group, row.key) or "—"
        lines.append("| " + " | ".join([label, paper, *(_cell(c, cells, source, group, row.key) for c in columns)])
                     + " |")
    return "\n".join([*lines, "", *(f"- {n}" for n in notes), ""])


def collected(rows: list[RowSource]) -> list[tuple[RowSource, Cells]]:
    """Each row with its cells (None: not run)."""
    return [(row, collect(row)) for row in rows]


def seed_table(rows: list[RowSource], seeds: Sequence[int], cell: Callable[[dict[str, float]], str]) -> list[str]:
    """A Markdown table of each row's `cell` in each seed, so a median's spread can be traced to its seeds."""
    head = ["method", *(f"seed {s}" for s in seeds)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        values = per_seed(row)
        lines.append("| " + " | ".join([row.label, *("—" if v is None else cell(v) for v in values)]) + " |")
    return lines
