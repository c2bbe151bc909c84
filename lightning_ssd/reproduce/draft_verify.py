"""Table 1's Draft & Verify row: the skip set searched on validation prompts, then the test split decoded with it.

The baseline drafts with the fine-tuned backbone itself, some layers skipped (`decoding/skip_drafter.py`); the skip
set is the best of `dv_trials` TPE trials (`nas/skip_set.py`, the deterministic "cost" objective) on the first
`dv_search_images` validation images. Drafting stops at the first draft below Draft & Verify's adaptive confidence
threshold, after at most d drafts. The test split is then decoded with it and with plain greedy decoding, on the
same batches as the test stage (`test_batch_size`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import BatchDecoder
from lightning_ssd.decoding.skip_drafter import AdaptiveThreshold
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.reproduce.decode_eval import evaluate_decoders, prompt_inputs, split_batches
from lightning_ssd.reproduce.plan import atomic_write_json
from lightning_ssd.reproduce.settings import Settings

SEARCH_BATCH = 8  # prompts per batch while searching: the search decodes them many times


def _quiet_optuna() -> None:
    """optuna logs one INFO line per trial, which buries the progress lines; without optuna the search says so."""
    try:
        import optuna
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_draft_verify(backbone: Path, settings: Settings, seed: int, out: Path) -> None:
    """Searches the skip set, decodes the test split with it, and writes out (a metrics.json like the test stage's)."""
    from lightning_ssd.nas.skip_set import search_skip_set

    _quiet_optuna()
    s = settings
    vlm = load_backbone(str(backbone)).eval()
    tokenizer = load_processor(str(backbone)).tokenizer
    search = split_batches(backbone, s, "val", images=s.dv_search_images, batch_size=SEARCH_BATCH)
    with torch.inference_mode():
        prompts = [vlm.encode(**prompt_inputs(b)) for b in search]
    found = search_skip_set(vlm, prompts, n_trials=s.dv_trials, seed=seed, draft=s.draft,
                            confidence_threshold=s.dv_threshold, max_new_tokens=s.max_new_tokens)
    eos = vlm.eos_token_id

    def decoders(model: SplitVLM) -> dict[str, BatchDecoder]:
        return {"full": build_decoder("full", model.decoder, eos),
                "draft_verify": build_decoder("draft_verify", model.decoder, eos,
                                              DraftSpec(draft=s.draft, confidence_threshold=s.dv_threshold),
                                              skip_layers=found.skip_layers, adaptive_threshold=AdaptiveThreshold())}

    result = evaluate_decoders(vlm, decoders, split_batches(backbone, s, "test"), tokenizer, s.max_new_tokens,
                               meteor=s.meteor)
    L = vlm.decoder.num_layers
    atomic_write_json(out, {
        **result, "L": L, "skip_layers": list(found.skip_layers), "first_skipped": min(found.skip_layers, default=L),
        "search_score": found.score, "search_trials": len(found.trials), "search_images": s.dv_search_images,
        "threshold": s.dv_threshold, "d": s.draft,
    })
