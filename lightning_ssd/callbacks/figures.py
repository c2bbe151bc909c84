"""TensorBoard figures of draft acceptance after each validation/test epoch."""

from __future__ import annotations

import math

from lightning.pytorch import Callback, LightningModule, Trainer
from matplotlib.figure import Figure

from lightning_ssd.callbacks.tensorboard import tensorboard_writer


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


class AcceptanceFigures(Callback):
    """Adds `<stage>/acceptance_by_position` and `<stage>/acceptance_by_step` figures (SSD decoder) on rank zero.

    Reads the summary the module leaves in `last_eval` after its evaluation epoch.
    """

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._add(trainer, pl_module, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._add(trainer, pl_module, "test")

    def _add(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        summary = getattr(pl_module, "last_eval", None)
        if trainer.sanity_checking or not trainer.is_global_zero or summary is None or summary.stage != stage:
            return
        writer = tensorboard_writer(trainer, type(self).__name__)
        if writer is None:
            return
        step = trainer.global_step
        tau = summary.scalars.get("ssd/tau", float("nan"))
        writer.add_figure(f"{stage}/acceptance_by_position",
                          acceptance_by_position_figure(summary.acceptance_by_position, f"{stage}, tau={tau:.2f}"),
                          step)
        writer.add_figure(f"{stage}/acceptance_by_step",
                          acceptance_by_step_figure(summary.acceptance_by_step, f"{stage}: acceptance vs t"), step)
