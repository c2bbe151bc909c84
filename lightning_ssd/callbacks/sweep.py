"""Speedup and quality against the draft length d (paper fig. 9), swept at the end of fit and/or test."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from lightning_ssd.backbones.vlm import vision_inputs
from lightning_ssd.callbacks.tensorboard import tensorboard_writer
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.metrics.acceptance import AcceptanceStats
from lightning_ssd.models.evaluation import as_dict, quality_metric
from lightning_ssd.timing import FLAG, check_speedup, marked, median_run


def sweep_figure(ds: list[int], speedups: list[float], quality: list[float], quality_name: str, title: str
                 ) -> Figure:
    """Speedup and a quality score against d, side by side (paper fig. 9)."""
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(ds, speedups, marker="o", color="tab:blue", label="SSD decode speedup")
    left.set(xlabel="draft tokens per cycle d", ylabel="speedup vs plain greedy (x)", title="speed")
    left.legend(fontsize=8)
    right.plot(ds, quality, marker="s", color="tab:green", label=f"SSD {quality_name}")
    right.set(xlabel="draft tokens per cycle d", ylabel=quality_name, title="quality (lossless: flat)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xticks(ds)
    fig.suptitle(title, fontsize=9)
    return fig


def sweep_table(results: dict[int, dict[str, float]], flags: dict[int, str] | None = None) -> str:
    """A Markdown table of the sweep, one row per d; a speedup in `flags` is marked, and its reason given below."""
    flags = flags or {}
    keys = list(next(iter(results.values())))
    lines = ["| d | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for d in sorted(results):
        cells = [marked(f"{results[d][k]:.3f}", k == "speedup" and d in flags) for k in keys]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += [f"\n{FLAG} d = {d}: {flags[d]}" for d in sorted(flags)]
    return "\n".join(lines)


class DraftLengthSweep(Callback):
    """Decodes part of a split with greedy and with SSD at each d, on rank zero; logs a figure and a table.

    `<stage>_sweep/speedup_and_<quality>` draws speedup and quality against d, and `<stage>_sweep/table` lists
    them (TensorBoard's scalar charts have no axis but the step, so the sweep is not logged as scalars). The
    quality is computed on the sequences the sweep decodes (`max_batches` of the split), which the title states: it
    need not equal the whole split's score. SSD is lossless, so its quality is the same for every d: the quality
    curve is a check, the speedup curve is the result.

    Timing: the first batch is decoded once, untimed, by every decoder (a first call pays one-time costs); then the
    batches are decoded `repeats` times, every decoder in turn within a repeat so that a busy CPU slows them alike,
    and each (batch, decoder) counts its run of median time. A speedup above what its measured tau allows
    (`lightning_ssd.timing`) is warned about and marked in the table.

    Args:
        draft_lengths: the values of d to try.
        max_batches: batches of the split decoded (None: all).
        split: "val" or "test".
        stages: when to sweep: at the end of "fit", of "test", or both.
        repeats: timed decodes of each batch by each decoder (>= 1).
    """

    def __init__(
        self,
        draft_lengths: list[int] | None = None,
        max_batches: int | None = 4,
        split: Literal["val", "test"] = "val",
        stages: list[Literal["fit", "test"]] | None = None,
        repeats: int = 3,
    ) -> None:
        self.draft_lengths = draft_lengths or [1, 2, 3, 4, 6, 8]
        if min(self.draft_lengths) < 1:
            raise ValueError(f"DraftLengthSweep: every d must be >= 1, got {self.draft_lengths}")
        if repeats < 1:
            raise ValueError(f"DraftLengthSweep: repeats must be >= 1, got {repeats}")
        self.repeats = repeats
        self.flags: dict[int, str] = {}
        self.max_batches = max_batches
        self.split = split
        self.stages = stages or ["fit", "test"]

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "fit" in self.stages and not trainer.fast_dev_run:
            self.sweep(trainer, pl_module, "fit")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "test" in self.stages and not trainer.fast_dev_run:
            self.sweep(trainer, pl_module, "test")

    def _batches(self, trainer: Trainer) -> list[dict]:
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ValueError("DraftLengthSweep reads the split from a LightningDataModule; pass one to the trainer "
                             "(data: in the config, or trainer.fit(model, datamodule=...))")
        datamodule.setup("validate" if self.split == "val" else "test")
        loader = datamodule.val_dataloader() if self.split == "val" else datamodule.test_dataloader()
        batches = []
        for batch in loader:
            if self.max_batches is not None and len(batches) >= self.max_batches:
                break
            batches.append(batch)
        return batches

    @torch.no_grad()
    def sweep(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> dict[int, dict[str, float]]:
        """Runs the sweep and returns {d: {"speedup", "tau", <quality>}} (empty off rank zero); `self.flags` holds
        the reason of each speedup that its tau makes impossible."""
        if not trainer.is_global_zero or pl_module.n is None:
            return {}
        batches = [trainer.strategy.batch_to_device(b) for b in self._batches(trainer)]
        if not batches:
            return {}
        was_training = pl_module.training
        pl_module.eval()
        # Rank zero alone: no metric may try to synchronise with the other ranks.
        greedy = AcceptanceStats(sync_on_compute=False)
        ssd = {d: AcceptanceStats(sync_on_compute=False) for d in self.draft_lengths}
        quality = {d: quality_metric(batches[0]["task"], sync_on_compute=False) for d in self.draft_lengths}
        jobs = [(i, d) for i in range(len(batches)) for d in [0, *self.draft_lengths]]
        runs = self._decode(pl_module, batches, jobs)
        for i, d in jobs:
            batch, result = batches[i], median_run(runs[i, d])
            if d == 0:
                greedy.update(result)
                continue
            ssd[d].update(result)
            quality[d].update(pl_module.decode_text(result.tokens), batch["references"])
        pl_module.train(was_training)
        base = greedy.compute()["seconds_per_token"]
        results, self.flags = {}, {}
        for d in self.draft_lengths:
            stats = ssd[d].compute()
            scores = as_dict(quality[d].compute())
            name = "BLEU-4" if "BLEU-4" in scores else next(iter(scores))
            results[d] = {"speedup": float(base / stats["seconds_per_token"]), "tau": float(stats["tau"]),
                          name: float(scores[name])}
            flag = check_speedup(results[d]["speedup"], float(stats["speedup_bound"]), f"{stage} sweep, d = {d}")
            if flag:
                self.flags[d] = flag
        self._log(trainer, stage, results, int(greedy.compute()["sequences"]), pl_module)
        return results

    def _decode(self, pl_module: LightningModule, batches: list[dict], jobs: list[tuple[int, int]]
                ) -> dict[tuple[int, int], list[GenerationResult]]:
        """Every job's timed runs (`repeats` of them), after one untimed decode of the first batch per decoder."""
        vlm = pl_module.vlm
        decoders = {d: build_decoder("full" if d == 0 else "ssd", vlm.decoder, vlm.eos_token_id,
                                     replace(pl_module.spec, draft=d) if d else None)
                    for d in [0, *self.draft_lengths]}

        def run(i: int, d: int) -> GenerationResult:
            batch = batches[i]
            inputs = dict(input_ids=batch["prompt_input_ids"], attention_mask=batch["prompt_attention_mask"],
                          **vision_inputs(batch))
            return generate(vlm, decoders[d], **inputs, max_new_tokens=pl_module.max_new_tokens)

        for d in decoders:
            run(0, d)
        runs: dict[tuple[int, int], list[GenerationResult]] = {job: [] for job in jobs}
        with tqdm(total=self.repeats * len(jobs), desc=f"draft length sweep ({self.split})", leave=False) as bar:
            for _ in range(self.repeats):
                for job in jobs:
                    runs[job].append(run(*job))
                    bar.update()
        return runs

    def _log(self, trainer: Trainer, stage: str, results: dict[int, dict[str, float]], sequences: int,
             pl_module: LightningModule) -> None:
        writer = tensorboard_writer(trainer, type(self).__name__)
        if writer is None:
            return
        ds = sorted(results)
        quality_name = [k for k in results[ds[0]] if k not in ("speedup", "tau")][0]
        title = (f"{self.split} split, first {sequences} sequences, SSD n={pl_module.n}; speedup against plain "
                 "greedy on the same sequences")
        fig = sweep_figure(ds, [results[d]["speedup"] for d in ds], [results[d][quality_name] for d in ds],
                           quality_name, title)
        writer.add_figure(f"{stage}_sweep/speedup_and_{quality_name}", fig, trainer.global_step)
        writer.add_text(f"{stage}_sweep/table", f"{title}\n\n{sweep_table(results, self.flags)}", trainer.global_step)
