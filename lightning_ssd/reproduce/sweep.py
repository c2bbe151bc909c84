"""Figure 9 (speedup and BLEU-4 against d) and figure 6's curve without imitation, decoded in one pass.

The trained draft of Table 1's main row decodes the test split with SSD at every d of `sweep_drafts`, next to plain
greedy decoding (the speed reference) and to SSD drafting with the plain early exit at the main d (no imitation
network), whose acceptance by output position t figure 6 sets beside the imitation draft's from the test stage.
METEOR is left out: the figure shows BLEU-4, and each METEOR score starts a JVM.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import BatchDecoder
from lightning_ssd.models.checkpoint import load_draft_spec
from lightning_ssd.reproduce.decode_eval import evaluate_decoders, split_batches
from lightning_ssd.reproduce.plan import atomic_write_json
from lightning_ssd.reproduce.settings import Settings

NO_IMITATION = "ssd_no_imitation"


def sweep_mode(d: int) -> str:
    return f"ssd_d{d}"


def run_sweep(backbone: Path, checkpoint: Path, settings: Settings, out: Path) -> None:
    """Decodes the test split with greedy, SSD at each d, and SSD without imitation; writes out (JSON)."""
    s = settings
    vlm = load_backbone(str(backbone)).eval()
    spec = load_draft_spec(checkpoint, vlm, backbone=str(backbone))
    n, eos = spec.n, vlm.eos_token_id

    def decoders(model: SplitVLM) -> dict[str, BatchDecoder]:
        imit = copy.deepcopy(spec.imitation).to(next(model.parameters()).dtype)  # the recheck's model is float64
        found = {"full": build_decoder("full", model.decoder, eos)}
        found |= {sweep_mode(d): build_decoder("ssd", model.decoder, eos, replace(spec, imitation=imit, draft=d))
                  for d in s.sweep_drafts}
        found[NO_IMITATION] = build_decoder("ssd", model.decoder, eos, replace(spec, imitation=None, draft=s.draft))
        return found

    tokenizer = load_processor(str(backbone)).tokenizer
    result = evaluate_decoders(vlm, decoders, split_batches(backbone, s, "test"), tokenizer, s.max_new_tokens)
    atomic_write_json(out, {**result, "n": n, "L": vlm.decoder.num_layers, "drafts": list(s.sweep_drafts),
                            "d": s.draft})
