"""The training and test stages, each one LightningCLI run in-process (as `tools/demo.py` runs them).

Each function runs one stage and writes its record last, atomically: `stage.json` after a fit (the chosen n, the
checkpoint, the exported backbone), `metrics.json` after a test (every `test/...` scalar, the SSD acceptance curves
and the sequences where SSD departs from the full model, rechecked in float64), `history.json` after a run
validated every epoch (figures 1, 7, 8). Lightning's own files (checkpoints, TensorBoard logs, the backbone folder)
are written before the record, so a record means the stage finished.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from lightning_ssd.configs import EXPERIMENTS, callbacks_with_exit_rule, callbacks_without_sweep
from lightning_ssd.reproduce.history import logged_scalars
from lightning_ssd.reproduce.plan import atomic_write_json
from lightning_ssd.reproduce.settings import Settings


@dataclass(frozen=True)
class RunContext:
    """Where one seed's stages write and what they share.

    Attributes:
        settings: sizes and values of the reproduction.
        seed: this seed (`seed_everything` and the preset's initialisation).
        root: this seed's folder.
        fragments: folder of the config fragments shared by every seed (callbacks less the d sweep).
    """

    settings: Settings
    seed: int
    root: Path
    fragments: Path

    @property
    def fit_callbacks(self) -> Path:
        return self.fragments / "fit_callbacks.yaml"

    @property
    def test_callbacks(self) -> Path:
        return self.fragments / "test_callbacks.yaml"


def write_fragments(fragments: Path) -> None:
    """The imitation and test stages' callbacks without their sweep over d (figure 9 has a stage of its own), as
    config fragments."""
    for name, source in (("fit_callbacks.yaml", "imitation.yaml"), ("test_callbacks.yaml", "test.yaml")):
        callbacks_without_sweep(source, fragments / name)


def _cli(args: list[str]):
    from lightning_ssd.cli import cli_main
    from lightning_ssd.threads import threads_args

    return cli_main([*args, *threads_args()])


def _common(ctx: RunContext) -> list[str]:
    s = ctx.settings
    args = ["--seed_everything", str(ctx.seed), "--model.init_args.max_new_tokens", str(s.max_new_tokens),
            "--data.init_args.num_train", str(s.num_train), "--data.init_args.num_val", str(s.num_val),
            "--data.init_args.num_test", str(s.num_test)]
    if s.batch_size is not None:
        args += ["--data.init_args.batch_size", str(s.batch_size)]
    if s.eval_batch_size is not None:
        args += ["--data.init_args.eval_batch_size", str(s.eval_batch_size)]
    if not s.progress_bar:
        args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    return args


def _modes(modes: tuple[str, ...]) -> list[str]:
    return ["--model.init_args.eval_modes", f"[{','.join(modes)}]"]


def _validate_last(epochs: int, mode: str) -> list[str]:
    """Validation after the last epoch only, with one decoder (the demo's choice: minutes, not hours)."""
    return ["--trainer.check_val_every_n_epoch", str(epochs), *_modes((mode,))]


def _metrics(cli, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith(prefix)}


def chosen_n(path: Path) -> int:
    """n from a ChooseLayerCallback fragment (`model: init_args: n:`)."""
    try:
        return int(yaml.safe_load(path.read_text())["model"]["init_args"]["n"])
    except (FileNotFoundError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: no model.init_args.n; the fine-tuning stage writes it (ChooseLayerCallback)"
                         ) from err


def finetune(ctx: RunContext, config: Path, out: Path, overrides: tuple[str, ...] = (),
             backbone: str | None = None, exit_rule: str | None = None) -> None:
    """Stage 1 from the preset (`backbone`, default the settings'): fine-tune, export the backbone to out/backbone,
    choose n (out/chosen_n.yaml) by `exit_rule` (default the settings'), whatever rule `config` itself names;
    `overrides` come last (another task, its lengths)."""
    s = ctx.settings
    exit_rule = exit_rule or s.exit_rule
    rule = callbacks_with_exit_rule(config, exit_rule, ctx.fragments / f"{config.stem}_{exit_rule}_callbacks.yaml")
    cli = _cli(["fit", "--config", str(config), "--config", str(rule), "--trainer.default_root_dir", str(out),
                "--trainer.max_epochs", str(s.finetune_epochs), "--model.init_args.backbone", backbone or s.backbone,
                "--model.init_args.backbone_seed", str(ctx.seed), "--model.init_args.export_dir", str(out / "backbone"),
                *_validate_last(s.finetune_epochs, "full"), *_common(ctx), *overrides])
    atomic_write_json(out / "stage.json", {"backbone": str(out / "backbone"), "n": chosen_n(out / "chosen_n.yaml"),
                                           "L": cli.model.vlm.decoder.num_layers,
                                           "metrics": _metrics(cli, "train/") | _metrics(cli, "val/")})


def imitation(ctx: RunContext, out: Path, backbone: Path, n: int, epochs: int, overrides: tuple[str, ...] = (),
              config: Path = EXPERIMENTS / "synthetic.yaml") -> None:
    """Stage 2 on the frozen backbone at layer n; `overrides` set the loss weights, fusion, ..."""
    cli = _cli(["fit", "--config", str(config), "--config", str(ctx.fit_callbacks),
                "--trainer.default_root_dir", str(out), "--trainer.max_epochs", str(epochs),
                "--model.init_args.backbone", str(backbone), "--model.init_args.n", str(n),
                *_validate_last(epochs, "draft_imit"), *_common(ctx), *overrides])
    atomic_write_json(out / "stage.json", {"checkpoint": str(out / "checkpoints" / "last.ckpt"), "n": n,
                                           "epochs": epochs, "overrides": list(overrides),
                                           "metrics": _metrics(cli, "train/") | _metrics(cli, "val/")})


def _mismatches(cli) -> dict[str, list[dict[str, Any]]]:
    """The test run's SSD sequences that differ from the full model's, as `decode_eval` records them by mode."""
    return {"ssd": [asdict(m) for m in cli.model.last_eval.mismatches]}


def test(ctx: RunContext, out: Path, backbone: Path, n: int, modes: tuple[str, ...], checkpoint: Path | None = None,
         config: Path = EXPERIMENTS / "synthetic" / "ssd_test.yaml", overrides: tuple[str, ...] = ()) -> None:
    """Decodes the test split with each of `modes` (one LightningCLI test run) and records what it measured.

    Where SSD's output differs from the full model's, the full model and SSD decode the split again in float64
    (`trainer.precision=64-true`, into out/float64). SSD is exact in exact arithmetic, so a difference that vanishes
    there was a float32 rounding tie and one that stays is a defect. The record keeps both runs' differing sequences.
    """
    s = ctx.settings
    ckpt = ["--ckpt_path", str(checkpoint)] if checkpoint is not None else []
    args = ["test", "--config", str(config), "--config", str(ctx.test_callbacks), *ckpt,
            "--model.init_args.backbone", str(backbone), "--model.init_args.n", str(n),
            "--model.init_args.draft", str(s.draft), *overrides, *_common(ctx),
            "--data.init_args.eval_batch_size", str(s.test_batch_size)]
    cli = _cli([*args, "--trainer.default_root_dir", str(out), "--model.init_args.meteor", str(s.meteor).lower(),
                *_modes(modes)])
    summary = cli.model.last_eval
    record: dict[str, Any] = {
        "n": n, "L": cli.model.vlm.decoder.num_layers, "modes": list(modes), "backbone": str(backbone),
        "eval_batch_size": cli.datamodule.eval_batch_size, "metrics": _metrics(cli, "test/"),
        "acceptance_by_step": summary.acceptance_by_step, "judged_by_step": summary.judged_by_step,
        "acceptance_by_position": summary.acceptance_by_position, "mismatches": _mismatches(cli),
    }
    if record["mismatches"]["ssd"]:
        exact = _cli([*args, "--trainer.default_root_dir", str(out / "float64"), "--trainer.precision", "64-true",
                      "--model.init_args.meteor", "false", *_modes(("full", "ssd"))])
        record["float64"] = {"metrics": {"test/ssd_identical": _metrics(exact, "test/")["test/ssd_identical"]},
                             "mismatches": _mismatches(exact)}
    atomic_write_json(out / "metrics.json", record)


def mixed(ctx: RunContext, out: Path, backbone: Path, n: int, joint_epochs: int) -> None:
    """MixedModule for `figure_epochs` epochs, the first `joint_epochs` joint, validated after every epoch with the
    full model and the draft; its per-epoch validation scalars, read from its TensorBoard log, go to history.json."""
    s = ctx.settings
    cli = _cli(["fit", "--config", str(EXPERIMENTS / "synthetic" / "mixed.yaml"), "--config", str(ctx.fit_callbacks),
                "--trainer.default_root_dir", str(out), "--trainer.max_epochs", str(s.figure_epochs),
                "--trainer.check_val_every_n_epoch", "1", "--model.init_args.backbone", str(backbone),
                "--model.init_args.n", str(n), "--model.init_args.joint_epochs", str(joint_epochs),
                "--model.init_args.export_dir", str(out / "backbone"), *_modes(("full", "draft_imit")),
                *_common(ctx)])
    history: dict[str, Any] = {"joint_epochs": joint_epochs, "epochs": s.figure_epochs, "n": n,
                               "val": logged_scalars(Path(cli.trainer.logger.log_dir), "val/")}
    atomic_write_json(out / "history.json", history)


def shifted_imitation(ctx: RunContext, out: Path, backbone: Path, n: int, checkpoint: Path, epochs: int,
                      overrides: tuple[str, ...]) -> None:
    """A short imitation fine-tune that starts from `checkpoint`'s weights (with a fresh optimizer and schedule) on
    the data `overrides` name (a shifted domain's training images); its record as `imitation`'s."""
    from lightning_ssd.cli import cli_main
    from lightning_ssd.models.checkpoint import load_checkpoint
    from lightning_ssd.threads import threads_args

    cli = cli_main(["--config", str(EXPERIMENTS / "synthetic.yaml"), "--config", str(ctx.fit_callbacks),
                    "--trainer.default_root_dir", str(out), "--trainer.max_epochs", str(epochs),
                    "--model.init_args.backbone", str(backbone), "--model.init_args.n", str(n),
                    *_validate_last(epochs, "draft_imit"), *_common(ctx), *overrides, *threads_args()], run=False)
    # the checkpoint holds the trained parts only; the frozen backbone comes from `backbone`
    found = cli.model.load_state_dict(load_checkpoint(checkpoint)["state_dict"], strict=False)
    wrong = [k for k in found.missing_keys if not k.startswith("vlm.")] + list(found.unexpected_keys)
    if wrong:
        raise ValueError(f"{checkpoint} does not fit the imitation module it should start from: {wrong[:5]}")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    atomic_write_json(out / "stage.json", {"checkpoint": str(out / "checkpoints" / "last.ckpt"), "n": n,
                                           "epochs": epochs, "start": str(checkpoint), "overrides": list(overrides),
                                           "metrics": _metrics(cli, "train/") | _metrics(cli, "val/")})
