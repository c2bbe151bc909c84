"""Trial records and the config fragment that applies the best one to `python -m lightning_ssd fit`.

Every finished trial writes `imitation_trial.json` into its output folder (`NNI_OUTPUT_DIR`). Export reads these
files, not NNI's database or REST API, so it works on a stopped experiment and needs no web server. The fragment is
a LightningCLI config that pins the architecture on top of an imitation-stage config:

    python -m lightning_ssd fit --config experiments/synthetic.yaml --config best_imitation.yaml
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from lightning_ssd.files import atomic_write_text

RECORD_FILE = "imitation_trial.json"
MODULE_CLASS = "lightning_ssd.models.ImitationModule"
NETWORK_CLASS = "lightning_ssd.models.components.imitation.ImitationNetwork"


@dataclass(frozen=True)
class TrialRecord:
    """What one finished trial trained and measured.

    Attributes:
        experiment_id: NNI experiment id ("standalone" outside NNI).
        trial_id: NNI trial job id ("standalone" outside NNI).
        params: the raw parameter sample from the tuner.
        backbone: the frozen backbone (preset name or checkpoint folder).
        n: draft exit layer.
        draft: draft tokens per cycle d.
        imitation: `ImitationNetwork` keyword arguments (all but `hidden_size`).
        fusion: fusion strategy of the cosine target.
        reward: `Reward.metrics()`: the reward under "default" and its terms.
        tau: mean accepted length measured at the last validation.
        cost_report: FLOP and parameter counts from `measure_cost_model`.
    """

    experiment_id: str
    trial_id: str
    params: dict[str, Any]
    backbone: str
    n: int
    draft: int
    imitation: dict[str, Any]
    fusion: str
    reward: dict[str, float]
    tau: float
    cost_report: dict[str, float]

    @property
    def score(self) -> float:
        return self.reward["default"]


def atomic_write(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same folder, so readers never see half a file."""
    atomic_write_text(path, text)


def save_record(record: TrialRecord, folder: str | Path) -> Path:
    path = Path(folder) / RECORD_FILE
    atomic_write(path, json.dumps(asdict(record), indent=2))
    return path


def load_record(path: str | Path) -> TrialRecord:
    path = Path(path)
    try:
        return TrialRecord(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"trial record {path}: unreadable or not written by this version ({err})") from err


def best_record(folder: str | Path) -> TrialRecord:
    """The highest-reward trial record anywhere under `folder` (an experiment's folder, or a trial's)."""
    folder = Path(folder)
    records = [load_record(p) for p in sorted(folder.rglob(RECORD_FILE))]
    if not records:
        raise FileNotFoundError(f"no {RECORD_FILE} under {folder}: no trial of this experiment finished (check the "
                                "experiment id and --experiment-dir, and the trials' stderr files)")
    return max(records, key=lambda r: r.score)


def fragment(record: TrialRecord) -> dict[str, Any]:
    """The `model` section that trains `record`'s architecture with the imitation stage."""
    init_args = {
        "backbone": record.backbone,
        "n": record.n,
        "draft": record.draft,
        "fusion": record.fusion,
        "imitation": {"class_path": NETWORK_CLASS, "init_args": dict(record.imitation)},
    }
    return {"model": {"class_path": MODULE_CLASS, "init_args": init_args}}


def write_fragment(record: TrialRecord, path: str | Path) -> Path:
    """Writes `fragment(record)` as YAML to `path` (atomically), with where it came from in a header."""
    path = Path(path)
    r = record.reward
    header = (
        f"# Best imitation network of NNI experiment {record.experiment_id} (trial {record.trial_id}).\n"
        f"# reward = expected SSD speedup {r['speedup']:.3f}x at measured alpha {r['alpha']:.3f}, d = {record.draft},\n"
        f"# imitation cost {r['imitation_cost']:.3f} decoder layers per token (nas/README.md).\n"
        "# Apply on top of an imitation-stage config:\n"
        "#   python -m lightning_ssd fit --config experiments/synthetic.yaml --config <this file>\n"
    )
    atomic_write(path, header + yaml.safe_dump(fragment(record), sort_keys=False))
    return path
