"""The command line: LightningCLI with linked arguments and the callbacks every run gets.

    python -m lightning_ssd fit --config experiments/synthetic/finetune.yaml
    python -m lightning_ssd fit --config experiments/synthetic/imitation.yaml --ckpt_path last
    python -m lightning_ssd test --config experiments/synthetic/ssd_test.yaml --ckpt_path <imitation .ckpt>

Model and data are chosen by `class_path` (subclass mode); `model.init_args.backbone` is copied to
`data.init_args.backbone`, so the processor always matches the model. Configs are read with OmegaConf, so `${...}`
interpolation works. Every run gets a `ModelCheckpoint` (key `checkpoint`, `save_last: true`) writing to
`<trainer.default_root_dir>/checkpoints` unless `checkpoint.dirpath` says otherwise, so `--ckpt_path last` finds
the previous run's last checkpoint whatever the logger's version folder; a `FiniteLossGuard` that stops on a
NaN/inf loss; and a `PredictionWriter` (key `predictions`) through which `predict` writes one JSONL line per sample
to `predictions.output` (default `<trainer.default_root_dir>/predictions.jsonl`). Without a logger set, runs log
to TensorBoard as Lightning's default does, without its placeholder `hp_metric`.

`--threads N` (or `threads: N` in a config) sets torch's CPU threads before the model is built; its default is the
rule of `lightning_ssd.threads` (1 on a 2-core machine).

With `--ckpt_path`, LightningCLI replaces the model's arguments by the hyperparameters stored in the checkpoint
(backbone, n, imitation architecture, fusion, loss weights); evaluation settings (draft, max_new_tokens, eval_modes,
meteor, num_samples) are not stored, so the config's values apply. A checkpoint records its backbone folder by
absolute path, so it works from any directory; a backbone typed on the command line (`--model.init_args.backbone`
or `--model.backbone`) wins over the recorded one, for a backbone that has moved, and is checked against the
checkpoint's fingerprint like any other.

Before any model loads, the config is checked (`lightning_ssd.cli_checks`): the `--config` files, then the data
files, then `--ckpt_path` (complete, and readable weights-only), then the backbone and n, then `--threads`. Errors,
jsonargparse's parse errors included, are raised as `UsageError`s (or other `UserError`s) whose one-line message
names the key and the config file that set it.
"""

from __future__ import annotations

import os
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_ssd.backbones import PRESETS, CheckpointError
from lightning_ssd.callbacks.guards import FiniteLossGuard
from lightning_ssd.callbacks.predictions import PredictionWriter
from lightning_ssd.cli_checks import (
    check_ckpt_path,
    check_config_files,
    check_data,
    check_model,
    check_threads,
    describe_parser_error,
)
from lightning_ssd.errors import UsageError
from lightning_ssd.models.base import SSDModule
from lightning_ssd.threads import THREADS_HELP, set_threads

BACKBONE_FLAGS = ("--model.init_args.backbone", "--model.backbone")


def typed_backbone(args: list[str]) -> str | None:
    """The backbone typed last on a command line as `--model.init_args.backbone` (or `--model.backbone`), given as
    `--flag VALUE` or `--flag=VALUE`; None when it is not typed."""
    value = None
    for i, arg in enumerate(args):
        flag, equals, rest = arg.partition("=")
        if flag in BACKBONE_FLAGS:
            value = rest if equals else (args[i + 1] if i + 1 < len(args) else None)
    return value


class SSDArgumentParser(LightningArgumentParser):
    """A parser that raises its errors (to be reported in one line) instead of printing usage and exiting."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("exit_on_error", False)
        super().__init__(*args, **kwargs)


class SSDLightningCLI(LightningCLI):
    """LightningCLI for the SSD stages: forced checkpointing and loss guard, backbone linked into the data."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # A stage's checkpoint folder is fixed (see before_instantiate_classes): a rerun replaces its files, as it
        # replaces the exported backbone, instead of adding last-v1.ckpt next to a stale last.ckpt.
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(FiniteLossGuard, "finite_loss")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.link_arguments("model.init_args.backbone", "data.init_args.backbone")
        parser.add_argument("--threads", type=int | None, default=None, help=THREADS_HELP)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict | Namespace) else []
        # Read before LightningCLI copies a checkpoint's hyperparameters over the parsed config (see
        # before_instantiate_classes): a backbone typed on the command line must survive that copy.
        self.typed_backbone = typed_backbone(argv)
        check_config_files(argv)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            subcommand = next((a for a in argv if a in self.subcommands()), None)
            raise UsageError(describe_parser_error(str(err), argv, subcommand)) from err
        config = self.config[self.config.subcommand] if self.config.get("subcommand") else self.config
        check_data(config)
        check_ckpt_path(config, argv)
        if not config.get("ckpt_path"):  # else the checkpoint's model arguments replace these, checked later
            check_model(config)
        check_threads(config, argv)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        set_threads(config.threads)  # before the model is built: loading and every stage run on these threads
        if self.typed_backbone is not None:
            config.model.init_args.backbone = config.data.init_args.backbone = self.typed_backbone
        elif config.get("ckpt_path") and Path(config.ckpt_path).is_file():
            _check_recorded_backbone(config.ckpt_path, config.model.init_args.backbone)
        check_model(config)
        root = config.trainer.default_root_dir or "."
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(Path(root) / "checkpoints")
        if config.trainer.logger in (None, True):
            # Lightning's default TensorBoard logger, less the hp_metric of -1 it would log for every run
            config.trainer.logger = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                                              init_args=Namespace(save_dir=root, default_hp_metric=False))


def _check_recorded_backbone(ckpt_path: str, backbone: str) -> None:
    if backbone in PRESETS or Path(backbone).is_dir():
        return
    raise CheckpointError(
        f"--ckpt_path {ckpt_path}: its backbone {backbone!r} is neither a preset nor a folder here (a relative path is "
        f"read from the current directory, {os.getcwd()}); give the backbone the checkpoint was trained on with "
        "--model.init_args.backbone PATH"
    )


def cli_main(args: list[str] | None = None, run: bool = True) -> SSDLightningCLI:
    """Builds and (with `run`) runs the CLI on `args` (None: `sys.argv[1:]`): fit, validate, test or predict."""
    return SSDLightningCLI(
        SSDModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # each module defines its AdamW + warm-up/cosine schedule
        parser_class=SSDArgumentParser,
        args=args,
        run=run,
    )
