"""Tiny synthetic data, trainers and CLI configs/subprocess runs for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Trainer

from lightning_ssd.data.synthetic import SyntheticDataModule

REPO = Path(__file__).resolve().parents[2]
RUNNER = "from lightning_ssd.cli import cli_main\n\nif __name__ == '__main__':\n    cli_main()\n"



def tiny_data(backbone: str, task: str = "vqa", batch_size: int = 4, **kwargs: Any) -> SyntheticDataModule:
    """A few samples of the embedded benchmark; VQA answers are short, so decoding stays fast."""
    sizes = {"num_train": 2, "num_val": 2, "num_test": 2, "questions_per_image": 2, "captions_per_image": 2}
    return SyntheticDataModule(task=task, backbone=backbone, batch_size=batch_size, **{**sizes, **kwargs})


def tiny_trainer(root, **kwargs: Any) -> Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=root)
    return Trainer(**{**options, **kwargs})


def tiny_config(root: Path, module: str = "ImitationModule", backbone: str = "tiny-blip2-opt",
                model_args: dict[str, Any] | None = None, data_args: dict[str, Any] | None = None,
                **trainer: Any) -> dict[str, Any]:
    """A whole CLI config: a tiny preset on a few samples of the synthetic VQA task, quiet trainer."""
    init = {"backbone": backbone, "max_new_tokens": 4, **({"n": 2} if module != "FineTuneModule" else {})}
    data = {"task": "vqa", "num_train": 4, "num_val": 2, "num_test": 2, "questions_per_image": 1,
            "batch_size": 2, "eval_batch_size": 2}
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "default_root_dir": str(root), "max_epochs": 1,
                    "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                    **trainer},
        "model": {"class_path": f"lightning_ssd.models.{module}", "init_args": {**init, **(model_args or {})}},
        "data": {"class_path": "lightning_ssd.data.SyntheticDataModule", "init_args": {**data, **(data_args or {})}},
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def runner(tmp_path: Path) -> list[str]:
    """`python run.py`: a script file, so that Lightning's DDP launcher can start it again for each rank."""
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    return [sys.executable, str(script)]


def run_cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*runner(tmp_path), *args], env=cli_env(), capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path)
