"""Table 6: the draft exit layer n chosen for each lambda, and by the speedup rule, over every layer 1..L-1 (the
n <= L/2 limit lifted).

The fine-tuning stage's ChooseLayerCallback keeps only the mean confidences of layers 1..L/2, as comments in
chosen_n.yaml, so this stage measures C_l = max softmax(g(x_l)) and each exit's agreement with the full model again,
teacher-forced on the whole validation split exactly as the callback does (`models/components/exit_layer.py`,
`speedup_rule.py`), for every l in 1..L-1. n(lambda) is the paper's argmax of mean C_l - lambda * l (ties to the
shallower layer); the one-standard-error tie-break is not applied here, since Table 6 is about the paper's reward.
The speedup rule's n is the cost model's argmax at the measured agreements and d.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_ssd.backbones import load_backbone
from lightning_ssd.models.components.exit_layer import ConfidenceStats, choose_exit_layer
from lightning_ssd.models.components.speedup_rule import choose_by_speedup_for, exit_statistics
from lightning_ssd.reproduce.decode_eval import split_batches
from lightning_ssd.reproduce.plan import atomic_write_json
from lightning_ssd.reproduce.settings import Settings, lambda_value


@torch.inference_mode()
def measure_confidences(backbone: Path, settings: Settings, out: Path) -> None:
    """Mean C_l and exit agreement over the validation split's samples for l = 1..L-1, and the speedup rule's n at
    the settings' d, written to out (JSON)."""
    vlm = load_backbone(str(backbone)).eval()
    dec = vlm.decoder
    layers = range(1, dec.num_layers)
    stats: ConfidenceStats | None = None
    agreement: ConfidenceStats | None = None
    for batch in split_batches(backbone, settings, "val"):
        batch_stats, batch_agree = exit_statistics(vlm, batch, layers)
        stats = batch_stats if stats is None else stats + batch_stats
        agreement = batch_agree if agreement is None else agreement + batch_agree
    if stats is None or stats.count == 0:
        raise ValueError("the validation split has no sample with a target: --num-val must be at least 1")
    speed = choose_by_speedup_for(vlm, agreement.mean, layers, settings.draft)
    atomic_write_json(out, {"L": dec.num_layers, "layers": list(layers), "mean_confidence": stats.mean.tolist(),
                            "mean_agreement": agreement.mean.tolist(), "count": stats.count,
                            "speedup_rule": {"d": settings.draft, "n": speed.n,
                                             "predicted_speedup": speed.predicted.tolist()}})


def choose_n(mean_confidence: list[float], num_layers: int, lam: str) -> int:
    """argmax over l = 1..L-1 of mean C_l - lambda * l, the shallower layer on a tie."""
    confidence = torch.tensor(mean_confidence, dtype=torch.float64)
    return choose_exit_layer(confidence, num_layers, lambda_value(lam, num_layers), range(1, len(mean_confidence) + 1))
