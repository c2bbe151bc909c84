"""TensorBoard figures of draft acceptance after each validation/test epoch."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from lightning_ssd.callbacks.tensorboard import EvalSummaryWriter


def _defined(values: list[float]) -> tuple[list[int], list[float]]:
    points = [(i, v) for i, v in enumerate(values) if not math.isnan(v)]
    return [i for i, _ in points], [v for _, v in points]


def acceptance_by_position_figure(rates: list[float], title: str) -> Figure:
    """Bar chart: P(draft position i accepted | earlier drafts of the cycle accepted), i = 1..d."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    x, y = _defined(rates)
    ax.bar([i + 1 for i in x], y, color="tab:blue")
    ax.set(xlabel="draft position in the cycle", ylabel="acceptance rate", ylim=(0, 1.05), title=title)
    return fig


def acceptance_by_step_figure(rates: list[float], title: str) -> Figure:
    """Line plot: acceptance of a draft token against its index t in the generated text (paper fig. 6)."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    x, y = _defined(rates)
    ax.plot(x, y, marker=".", color="tab:orange")
    ax.set(xlabel="time step t (output token index)", ylabel="acceptance rate", ylim=(0, 1.05), title=title)
    return fig


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
        writer.add_figure(f"{stage}/acceptance_by_position",
                          acceptance_by_position_figure(summary.acceptance_by_position, f"{stage}, tau={tau:.2f}"),
                          step)
        writer.add_figure(f"{stage}/acceptance_by_step",
                          acceptance_by_step_figure(summary.acceptance_by_step, f"{stage}: acceptance vs t"), step)
