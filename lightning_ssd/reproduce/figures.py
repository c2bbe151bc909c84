"""The report's figures as PNGs (matplotlib's Agg canvas, no display): figures 9, 6, 1/7 and 8 of the paper.

Each draws one seed's records (the first of --seeds); the paper's figures have no numbers in its text, so each
title quotes what the paper says it shows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lightning_ssd.files import atomic_open
from lightning_ssd.reproduce.sweep import NO_IMITATION, sweep_mode

MIN_JUDGED = 5  # output positions with fewer judged drafts are left out of figure 6: a ratio of 1 or 2 is noise
FULL, DRAFT = "val/full/BLEU-4", "val/draft_imit/BLEU-4"


def save(fig: Figure, path: Path) -> None:
    with atomic_open(path, "wb") as f:  # an interrupted savefig leaves no half PNG
        fig.savefig(f, format="png", dpi=110)


def fig9(sweep: dict[str, Any], path: Path) -> None:
    """SSD speedup and BLEU-4 against d (paper fig. 9)."""
    m, ds = sweep["metrics"], sweep["drafts"]
    fig = Figure(figsize=(8.5, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(ds, [m[f"test/{sweep_mode(d)}/speedup"] for d in ds], marker="o", label="SSD with imitation")
    left.axhline(1.0, color="grey", lw=0.8, ls="--", label="plain greedy")
    left.set(xlabel="draft tokens per cycle d", ylabel="speedup over plain greedy (x)", title="speed")
    right.plot(ds, [m[f"test/{sweep_mode(d)}/BLEU-4"] for d in ds], marker="s", color="tab:green", label="SSD")
    right.axhline(m["test/full/BLEU-4"], color="grey", lw=0.8, ls="--", label="full model")
    right.set(xlabel="draft tokens per cycle d", ylabel="BLEU-4", title="quality")
    for ax in (left, right):
        ax.set_xticks(ds)
        ax.legend(fontsize=8)
    fig.suptitle(f"Fig. 9: speedup and BLEU-4 against d (test split, n = {sweep['n']} of L = {sweep['L']})",
                 fontsize=10)
    save(fig, path)


def acceptance_curve(acceptance: list[float], judged: list[int]) -> tuple[list[int], list[float]]:
    points = [(t, a) for t, (a, j) in enumerate(zip(acceptance, judged, strict=True))
              if j >= MIN_JUDGED and not math.isnan(a)]
    return [t for t, _ in points], [a for _, a in points]


def fig6(test: dict[str, Any], sweep: dict[str, Any], path: Path) -> None:
    """Acceptance rate of a draft token against its output position t, with and without imitation (paper fig. 6)."""
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    ts, rate = acceptance_curve(test["acceptance_by_step"], test["judged_by_step"])
    ax.plot(ts, rate, marker=".", label="SSD with imitation (test stage)")
    ts, rate = acceptance_curve(sweep["acceptance_by_step"][NO_IMITATION], sweep["judged_by_step"][NO_IMITATION])
    ax.plot(ts, rate, marker=".", color="tab:red", label="SSD, plain early exit (no imitation)")
    ax.set(xlabel="output position t of the draft token", ylabel="acceptance rate", ylim=(-0.02, 1.02),
           title=f"Fig. 6: acceptance against t (n = {test['n']}, d = {sweep['d']}; t with >= {MIN_JUDGED} drafts)")
    ax.legend(fontsize=8)
    save(fig, path)


def _epochs(history: dict[str, Any], tag: str) -> tuple[list[int], list[float]]:
    values = history["val"].get(tag, [])
    return list(range(1, len(values) + 1)), values


def training_figure(histories: dict[str, dict[str, Any]], title: str, path: Path) -> None:
    """Full model's and draft's validation BLEU-4 per epoch for each run (paper figs. 1, 7 and 8)."""
    fig = Figure(figsize=(8.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, tag, what in ((axes[0], FULL, "full model"), (axes[1], DRAFT, "draft with imitation")):
        for history in histories.values():
            joint = history["joint_epochs"]
            label = {0: "frozen backbone"}.get(joint, "joint training" if joint >= history["epochs"]
                                               else f"mixed: {joint} joint epoch(s), then frozen")
            ax.plot(*_epochs(history, tag), marker="o", label=label)
            if 0 < joint < history["epochs"]:
                ax.axvline(joint + 0.5, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="epoch", ylabel="validation BLEU-4", title=what)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save(fig, path)
