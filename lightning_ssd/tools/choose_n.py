"""`python -m lightning_ssd choose-n`: the draft exit layer n of a fine-tuned backbone (paper appendix A.4).

n maximises (mean max-softmax confidence of g(x_l) on the validation split) - lambda * l over l in 1..L/2,
lambda = 1/L unless given; --rule one_se takes the shallowest layer within one standard error of that maximum;
--rule speedup the layer whose measured agreement with the full model predicts the highest decode speedup at
--draft d (the FLOP cost model).
Runs `validate` with experiments/synthetic/choose_n.yaml and writes a YAML fragment (`model.init_args.n`) to add
after an imitation config with a second --config.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import yaml

from lightning_ssd.configs import EXPERIMENTS
from lightning_ssd.errors import ToolParser, UsageError, at_least
from lightning_ssd.threads import add_threads_argument, set_threads, threads_args
from lightning_ssd.tools import checks


def main(argv: list[str] | None = None) -> None:
    p = ToolParser(prog="python -m lightning_ssd choose-n", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="fine-tuned backbone folder (or a preset)")
    p.add_argument("--lam", type=float, default=None, help="cost per layer lambda (default 1/L)")
    p.add_argument("--rule", choices=["argmax", "one_se", "speedup"], default="argmax",
                   help="argmax: the paper's rule; one_se: the shallowest layer whose mean reward is within one "
                        "standard error of the best; speedup: the highest speedup predicted from each layer's "
                        "agreement with the full model")
    p.add_argument("--draft", type=at_least(1), default=6, help="d of the speedup rule's prediction")
    p.add_argument("--output", default="chosen_n.yaml", help="where to write the YAML fragment")
    p.add_argument("--batches", type=at_least(1), default=4, help="validation batches to average over")
    p.add_argument("--config", default=str(EXPERIMENTS / "synthetic" / "choose_n.yaml"),
                   help="validate config whose data section provides the validation split")
    add_threads_argument(p)
    a = p.parse_args(argv)
    checks.backbone(a.backbone)
    if not Path(a.config).is_file():
        raise UsageError(f"--config {a.config}: no such file; give a validate config with a data section")
    checks.output_file(a.output)
    set_threads(a.threads)
    from lightning_ssd.cli import cli_main

    output = Path(a.output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    callback = {"class_path": "lightning_ssd.callbacks.ChooseLayerCallback",
                "init_args": {"output": str(output), "lam": a.lam, "rule": a.rule, "draft": a.draft}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"trainer": {"callbacks": [callback], "limit_val_batches": a.batches,
                                    "default_root_dir": str(output.parent / "choose_n")}}, f)
    try:
        cli_main(["validate", "--config", a.config, "--config", f.name, "--model.init_args.backbone", a.backbone,
                  *threads_args()])
    finally:
        os.unlink(f.name)
    print(output.read_text())
