"""One NNI trial: a short imitation-stage training of one candidate network on a frozen backbone, then its reward.

Run by NNI as `python nas/trial.py [--backbone ... --n ...]` (see `nas/search.py`); outside NNI the same command
trains the ImitationNetwork defaults once, which is a quick smoke test. Each trial:

1. maps the tuner's sample to an `ImitationNetwork` + fusion (`space.architecture_from_params`);
2. trains it through the project's `ImitationModule` (backbone frozen) with a fresh Lightning `Trainer` on the
   embedded synthetic benchmark, validating by SSD decoding after every epoch and reporting the measured tau as an
   NNI intermediate result;
3. measures the network's FLOPs (`measure_cost_model`) and reports the expected speedup at the measured alpha as
   the final result (`reward.draft_reward`);
4. writes `imitation_trial.json` (for export) and a TensorBoard log to `$NNI_OUTPUT_DIR/tensorboard`.

An exception propagates: the process exits non-zero and NNI records the trial as FAILED, the search goes on.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import nni
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_ssd.data.synthetic import SyntheticDataModule
from lightning_ssd.decoding.cost import measure_cost_model
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.models.imitation import ImitationModule
from lightning_ssd.nas.export import TrialRecord, save_record
from lightning_ssd.nas.reward import draft_reward
from lightning_ssd.nas.space import Architecture, architecture_from_params

log = logging.getLogger(__name__)
TENSORBOARD_DIR = "tensorboard"


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one search shares (command-line flags of `nas/trial.py`, `-` for `_`).

    Attributes:
        backbone: frozen backbone: a checkpoint folder from the fine-tuning stage (the default is the one
            `experiments/synthetic/finetune.yaml` writes), or a preset name.
        n: draft exit layer the imitation network reads (the architecture that wins depends on it).
        draft: draft tokens per cycle d, for validation decoding and the reward.
        task: synthetic benchmark task: caption, vqa, visdial or long.
        num_train: training images (5 caption samples each for the caption task).
        num_val: validation images, decoded with SSD after every epoch.
        batch_size: training and validation batch size.
        epochs: training epochs (one intermediate result each); 0 only validates the untrained network.
        max_new_tokens: generation length cap at validation.
        lr: AdamW learning rate of the imitation network (and a trainable fusion).
        warmup_steps: linear warm-up steps before the cosine decay.
        seed: seed of the data, of the network's initialisation and of a preset backbone (search.py: also the tuner's).
        threads: torch CPU threads of this trial (0 keeps torch's default).
        accelerator: Lightning accelerator (cpu, gpu, auto).
    """

    backbone: str = "runs/synthetic/finetune/backbone"
    n: int = 2
    draft: int = 4
    task: str = "caption"
    num_train: int = 128
    num_val: int = 32
    batch_size: int = 32
    epochs: int = 4
    max_new_tokens: int = 24
    lr: float = 1e-3
    warmup_steps: int = 10
    seed: int = 0
    threads: int = 1
    accelerator: str = "auto"

    def to_args(self) -> list[str]:
        """These settings as `nas/trial.py` flags."""
        return [a for f in fields(self) for a in (f"--{f.name.replace('_', '-')}", str(getattr(self, f.name)))]


def attribute_docs(cls: type) -> dict[str, str]:
    """The `Attributes:` entries of a Google-style class docstring, by name (continuation lines joined)."""
    docs: dict[str, str] = {}
    lines = (cls.__doc__ or "").split("Attributes:", 1)[-1].splitlines()
    for line in lines:
        name, sep, text = line.strip().partition(": ")
        if sep and name.isidentifier() and line.startswith(" " * 8) and not line.startswith(" " * 12):
            docs[name] = text
        elif docs and line.strip():
            docs[next(reversed(docs))] += " " + line.strip()
    return docs


def settings_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="One imitation-network NAS trial (run by NNI; see nas/README.md).")
    docs = attribute_docs(TrialSettings)
    for f in fields(TrialSettings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                            help=f"{docs[f.name]} (default: {f.default})")
    return parser


class NNIIntermediateReport(Callback):
    """After every validation, reports the SSD mean accepted length tau (and alpha) as an NNI intermediate result."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        summary = getattr(pl_module, "last_eval", None)
        if trainer.sanity_checking or summary is None:
            return
        tau, alpha = summary.scalars.get("ssd/tau", math.nan), summary.scalars.get("ssd/alpha", math.nan)
        if not math.isfinite(tau):
            log.warning("no SSD cycle at validation (epoch %d): no intermediate result", trainer.current_epoch)
            return
        nni.report_intermediate_result({"default": tau, **({"alpha": alpha} if math.isfinite(alpha) else {})})


def build_module(arch: Architecture, settings: TrialSettings) -> ImitationModule:
    """The imitation-stage module of one candidate; validation decodes with SSD only (the reward needs alpha)."""
    return ImitationModule(
        settings.backbone,
        n=settings.n,
        imitation=partial(ImitationNetwork, **arch.imitation),
        fusion=arch.fusion,
        cache_targets=True,  # synthetic samples are the same every epoch: later epochs skip the backbone
        draft=settings.draft,
        max_new_tokens=settings.max_new_tokens,
        eval_modes=["ssd"],
        lr=settings.lr,
        warmup_steps=settings.warmup_steps,
        backbone_seed=settings.seed,
    )


def build_data(settings: TrialSettings) -> SyntheticDataModule:
    return SyntheticDataModule(
        task=settings.task,
        num_train=settings.num_train,
        num_val=settings.num_val,
        num_test=1,
        seed=settings.seed,
        backbone=settings.backbone,
        batch_size=settings.batch_size,
    )


def link_for_web_ui(tensorboard_dir: Path) -> None:
    """Makes the web UI's TensorBoard button find this trial's log.

    NNI 3.0's local training service runs a trial in `<experiment>/environments/<env>/trials/<id>` (its
    NNI_OUTPUT_DIR), while the web UI's TensorBoard reads `<experiment>/trials/<id>/output/tensorboard`; a link
    joins the two.
    """
    trial_dir = tensorboard_dir.parent
    parents = trial_dir.parents
    if len(parents) < 4 or parents[0].name != "trials" or parents[2].name != "environments":
        log.warning("NNI_OUTPUT_DIR %s is not laid out as NNI 3.0's local training service does; the web UI's "
                    "TensorBoard will not find this trial's log (it is in %s)", trial_dir, tensorboard_dir)
        return
    link = parents[3] / "trials" / trial_dir.name / "output" / TENSORBOARD_DIR
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(tensorboard_dir, target_is_directory=True)


def run_trial(params: Mapping[str, Any], settings: TrialSettings, output_dir: str | Path) -> TrialRecord:
    """Trains and scores the candidate `params` (an NNI sample); writes its record and TensorBoard log to
    `output_dir` and returns the record. Reports to NNI (a no-op outside an NNI trial)."""
    output_dir = Path(output_dir)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed, verbose=False)
    arch = architecture_from_params(params)
    module = build_module(arch, settings)
    logger = TensorBoardLogger(output_dir, name=TENSORBOARD_DIR, version="", default_hp_metric=False)
    trainer = Trainer(
        accelerator=settings.accelerator,
        devices=1,
        max_epochs=settings.epochs,
        logger=logger,
        callbacks=[NNIIntermediateReport()],
        default_root_dir=output_dir,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    data = build_data(settings)
    trainable = any(p.requires_grad for p in module.parameters())
    if settings.epochs and trainable:
        trainer.fit(module, data)
    else:  # e.g. no linear layer, no attention, no norm, average fusion: the plain early exit, nothing to train
        trainer.validate(module, data, verbose=False)
    if module.last_eval is None:
        raise RuntimeError(f"trial: no validation ran; --num-val must be >= 1 (got {settings.num_val})")
    scalars = module.last_eval.scalars
    cost, report = measure_cost_model(module.vlm.decoder, settings.n, module.imitation)
    reward = draft_reward(cost, scalars["ssd/alpha"], settings.draft)
    logger.experiment.add_text("nas/architecture", f"params: {dict(params)}\n\nreward: {reward.metrics()}")
    logger.finalize("success")
    record = TrialRecord(
        experiment_id=nni.get_experiment_id(),
        trial_id=nni.get_trial_id(),
        params=dict(params),
        backbone=settings.backbone,
        n=settings.n,
        draft=settings.draft,
        imitation=arch.imitation,
        fusion=arch.fusion,
        reward=reward.metrics(),
        tau=scalars["ssd/tau"],
        cost_report=report,
    )
    save_record(record, output_dir)
    nni.report_final_result(reward.metrics())
    return record


def main(argv: list[str] | None = None) -> None:
    """Entry point of `nas/trial.py`: settings from the flags, the candidate from NNI."""
    parser = settings_parser()
    parser.add_argument("--output-dir", default="runs/nas/standalone",
                        help="where a run outside NNI writes its files (under NNI: $NNI_OUTPUT_DIR)")
    args = vars(parser.parse_args(argv))
    standalone_dir = args.pop("output_dir")
    settings = TrialSettings(**args)
    under_nni = "NNI_OUTPUT_DIR" in os.environ
    output_dir = Path(os.environ["NNI_OUTPUT_DIR"] if under_nni else standalone_dir)
    if under_nni:
        (output_dir / TENSORBOARD_DIR).mkdir(parents=True, exist_ok=True)
        link_for_web_ui(output_dir / TENSORBOARD_DIR)
    run_trial(nni.get_next_parameter() or {}, settings, output_dir)
