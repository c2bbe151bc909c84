"""The size-ratio grid's report: grid.md (speedup, alpha, the draft's CIDEr and parameters per n x capacity) and
fig_grid.png (the speedup surface as a heat map), with the sentence that names the winning cell."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lightning_ssd.reproduce.figures import save
from lightning_ssd.reproduce.grid import LABELS, slug

NAN = float("nan")
DEFAULT_CAPACITY = "attention + 2 linear, width x2"  # experiments/_base/imitation.yaml, the NAS space's choice


def cell(record: dict[str, Any] | None, capacity: str, key: str) -> float:
    """One grid cell's value: SSD's speedup / tau / alpha, the draft's CIDEr ("draft CIDEr") or "params"."""
    if record is None:
        return NAN
    if key in ("params", "reward"):
        return float(record.get(key, {}).get(capacity, NAN))
    mode = f"draft_{slug(capacity)}" if key == "draft CIDEr" else f"ssd_{slug(capacity)}"
    return float(record["metrics"].get(f"test/{mode}/{'CIDEr' if key == 'draft CIDEr' else key}", NAN))


def winner(records: dict[int, dict[str, Any] | None], key: str = "speedup") -> tuple[int, str, float] | None:
    """(n, capacity, value) of the cell with the highest `key` (measured speedup, or the NAS reward)."""
    cells = [(n, cap, cell(r, cap, key)) for n, r in records.items() for cap in LABELS]
    cells = [c for c in cells if math.isfinite(c[2])]
    return max(cells, key=lambda c: c[2]) if cells else None


def grid_sentence(records: dict[int, dict[str, Any] | None], chosen_n: int | None) -> str:
    best = winner(records)
    if best is None:
        return "The grid has not run."
    n, cap, speed = best
    L = next(r["L"] for r in records.values() if r is not None)
    default = cell(records.get(n), DEFAULT_CAPACITY, "speedup")
    text = (f"The fastest cell is n = {n} of L = {L} (a draft of {n / L:.0%} of the decoder's layers) with "
            f"{'no imitation network' if cap == 'none' else 'imitation ' + cap} at {speed:.2f}x, alpha "
            f"{cell(records[n], cap, 'alpha'):.3f}.")
    if chosen_n is not None:
        text += f" The fine-tune's exit rule chose n = {chosen_n}: " + (
            "the winning n." if chosen_n == n else
            f"not the winning n (its best cell: "
            f"{max((cell(records.get(chosen_n), c, 'speedup') for c in LABELS), default=NAN):.2f}x)."
            if records.get(chosen_n) is not None else
            f"outside the grid (n = {', '.join(str(k) for k in sorted(records))}).")
    if cap != DEFAULT_CAPACITY and math.isfinite(default):
        text += f" The default network ({DEFAULT_CAPACITY}) gives {default:.2f}x at that n."
    found = winner(records, "reward")
    if found is not None:
        r_n, r_cap, r_value = found
        text += (f" The NAS reward (predicted speedup from FLOPs at the measured alpha) ranks n = {r_n}, {r_cap} "
                 f"first ({r_value:.2f}x predicted): "
                 + ("the same cell, so the search would have found it." if (r_n, r_cap) == (n, cap) else
                    f"not the fastest cell; measured there {cell(records[r_n], r_cap, 'speedup'):.2f}x. FLOPs miss "
                    "what a CPU pays per call (kernel launches, Python, cache copies), which favour fewer, larger "
                    "steps."))
    return text


def seed_summary(seed: int, records: dict[int, dict[str, Any] | None]) -> str | None:
    """One seed's grid in a sentence: its fastest cell and the cell the NAS reward ranks first (None: not run)."""
    best, found = winner(records), winner(records, "reward")
    if best is None or found is None:
        return None
    n, cap, speed = best
    r_n, r_cap, _ = found
    return (f"seed {seed}: fastest n = {n}, {cap} ({speed:.2f}x); the NAS reward's first, n = {r_n}, {r_cap}, "
            f"measured {cell(records[r_n], r_cap, 'speedup'):.2f}x")


def grid_markdown(records: dict[int, dict[str, Any] | None], chosen_n: int | None, epochs: int,
                  by_seed: dict[int, dict[int, dict[str, Any] | None]] | None = None) -> str:
    """grid.md: the first seed's table and sentence; with `by_seed` (every seed's records), a line per seed."""
    head = ["n", "capacity", "parameters", "Spd.", "NAS reward", "tau", "alpha", "draft CIDEr"]
    lines = ["# Open question: the draft-to-full size ratio (exit layer n x imitation capacity)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, record in records.items():
        for cap in LABELS:
            values = [cell(record, cap, k) for k in ("params", "speedup", "reward", "tau", "alpha", "draft CIDEr")]
            formats = ("{:,.0f}", "{:.2f}x", "{:.2f}x", "{:.2f}", "{:.3f}", "{:.1f}")
            text = [f.format(v) if math.isfinite(v) else "—" for v, f in zip(values, formats, strict=True)]
            lines.append("| " + " | ".join([str(n), cap, *text]) + " |")
    first = next((r for r in records.values() if r is not None), None)
    about = (f"Long-answer backbone, {first['images']} test images per cell, d = {first['d']}, imitation "
             f"{epochs} epoch(s) per cell; Spd. against plain greedy decoding of the same images."
             if first else "Not run.")
    seeds = [text for seed, recs in (by_seed or {}).items() if (text := seed_summary(seed, recs))]
    across = [f"- Seed by seed: {'; '.join(seeds)}."] if len(seeds) > 1 else []
    return "\n".join([*lines, "", f"- {about}", f"- {grid_sentence(records, chosen_n)}", *across,
                      "- The paper has no such ablation: it fixes n by its confidence reward and the network at two "
                      "linear layers.", ""])


def fig_grid(records: dict[int, dict[str, Any] | None], path: Path) -> None:
    """SSD's speedup over n x capacity as a heat map, each cell annotated."""
    ns = list(records)
    values = [[cell(records[n], cap, "speedup") for n in ns] for cap in LABELS]
    fig = Figure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if math.isfinite(v):
                ax.text(j, i, f"{v:.2f}x", ha="center", va="center", color="white" if v < max(
                    (x for r in values for x in r if math.isfinite(x)), default=v) * 0.9 else "black", fontsize=9)
    ax.set_xticks(range(len(ns)), [str(n) for n in ns])
    ax.set_yticks(range(len(LABELS)), ["no imitation", *LABELS[1:]])
    ax.set(xlabel="draft exit layer n", title="SSD speedup over plain greedy decoding (long answers)")
    fig.colorbar(image, ax=ax, label="speedup (x)")
    save(fig, path)
