"""TensorBoard figures of draft acceptance after each validation/test epoch."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from lightning_ssd.callbacks.tensorboard import EvalSummaryWriter


def _defined(values: list[float], counts: list[int]) -> tuple[list[int], list[float], list[int]]:
    points = [(i, v, c) for i, (v, c) in enumerate(zip(values, counts, strict=True)) if not math.isnan(v)]
    return [i for i, _, _ in points], [v for _, v, _ in points], [c for _, _, c in points]


def acceptance_by_position_figure(rates: list[float], counts: list[int], title: str) -> Figure:
    """Bars: P(draft position i accepted | positions < i of its cycle accepted), i = 1..d, each with its count."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x, y, n = _defined(rates, counts)
    bars = ax.bar([i + 1 for i in x], y, color="tab:blue", label="acceptance rate")
    ax.bar_label(bars, labels=[f"n={c}" for c in n], fontsize=7, padding=2)
    ax.set(xlabel="draft position i in the cycle", ylabel="P(accepted | earlier drafts accepted)",
           ylim=(0, 1.15), title=title)
    ax.set_xticks([i + 1 for i in x])
    ax.legend(loc="lower left", fontsize=8)
    return fig


def acceptance_by_step_figure(rates: list[float], counts: list[int], title: str) -> Figure:
    """Acceptance of a draft token against its index t in the output (paper fig. 6), over the draft tokens judged
    at t, whose number is drawn below."""
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    x, y, n = _defined(rates, counts)
    top.plot(x, y, marker=".", color="tab:orange", label="acceptance rate of draft tokens at t")
    top.set(ylabel="acceptance rate", ylim=(0, 1.05), title=title)
    top.legend(loc="lower right", fontsize=8)
    bottom.bar(x, n, color="tab:gray", label="draft tokens judged at t")
    bottom.set(xlabel="time step t (index of the token in the output)", ylabel="count")
    bottom.legend(loc="upper right", fontsize=8)
    return fig


def _setting(pl_module: LightningModule) -> str:
    return f"SSD n={pl_module.n}, d={pl_module.draft}"


class AcceptanceFigures(EvalSummaryWriter):
    """Adds `<stage>/acceptance_by_position` and `<stage>/acceptance_by_step` figures (SSD decoder) on rank zero.

    Reads the summary the module leaves in `last_eval` after its evaluation epoch; nothing without an SSD decoder.
    """

    def wants(self, pl_module: LightningModule, summary: Any) -> bool:
        return "ssd/tau" in summary.scalars

    def write(self, writer: SummaryWriter, trainer: Trainer, pl_module: LightningModule, summary: Any,
              stage: str) -> None:
        step = trainer.global_step
        tau = summary.scalars.get("ssd/tau", float("nan"))
        sequences = int(summary.scalars.get("num_sequences", 0))
        head = f"{stage} split, {_setting(pl_module)}, {sequences} sequences"
        writer.add_figure(f"{stage}/acceptance_by_position",
                          acceptance_by_position_figure(summary.acceptance_by_position, summary.judged_by_position,
                                                        f"{head}, tau={tau:.2f}"), step)
        writer.add_figure(f"{stage}/acceptance_by_step",
                          acceptance_by_step_figure(summary.acceptance_by_step, summary.judged_by_step,
                                                    f"acceptance vs t: {head}"), step)
