"""Decoding the other tasks of the embedded benchmark (dialog, zero-shot captions, VQA, long answers) with every
decoder of a table row, and decoding long outputs at fixed lengths.

`run_task_eval` loads a task's fine-tuned backbone and its imitation network and decodes the task's test split with
plain greedy decoding (the reference), the draft without and with imitation, SSD and, where asked, Draft & Verify (its
skip set searched on the task's validation prompts, as Table 1's row). `run_layerskip_eval` decodes it with a
LayerSkip-trained backbone's plain early exit, verified by that backbone (the LayerSkip row). `run_length_eval`
decodes the first test images of the long-answer task with end-of-sequence turned off, so that every output is exactly
`cap` tokens long, for each cap: the speedup, tau, alpha and per-token time of plain decoding and SSD at that output
length. Past the point where the model would have stopped, it continues its own text, which the draft predicts as it
would any other.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import BatchDecoder
from lightning_ssd.decoding.skip_drafter import AdaptiveThreshold
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.checkpoint import load_draft_spec
from lightning_ssd.reproduce.decode_eval import evaluate_decoders, prompt_inputs, split_batches
from lightning_ssd.reproduce.plan import atomic_write_json
from lightning_ssd.reproduce.settings import Settings

SEARCH_BATCH = 8


def _load(backbone: Path, checkpoint: Path) -> tuple[SplitVLM, DraftSpec, Any]:
    vlm = load_backbone(str(backbone)).eval()
    spec = load_draft_spec(checkpoint, vlm)
    spec.imitation.eval()
    return vlm, spec, load_processor(str(backbone)).tokenizer


def _skip_set(vlm: SplitVLM, settings: Settings, seed: int, backbone: Path, data: dict[str, Any],
              max_new_tokens: int) -> tuple[int, ...]:
    from lightning_ssd.nas.skip_set import search_skip_set
    from lightning_ssd.reproduce.draft_verify import _quiet_optuna

    _quiet_optuna()
    s = settings
    search = split_batches(backbone, s, "val", images=s.dv_search_images, batch_size=SEARCH_BATCH, **data)
    with torch.inference_mode():
        prompts = [vlm.encode(**prompt_inputs(b)) for b in search]
    found = search_skip_set(vlm, prompts, n_trials=s.dv_trials, seed=seed, draft=s.draft,
                            confidence_threshold=s.dv_threshold, max_new_tokens=max_new_tokens)
    return tuple(found.skip_layers)


def run_task_eval(backbone: Path, checkpoint: Path, settings: Settings, seed: int, data: dict[str, Any],
                  max_new_tokens: int, out: Path, draft_verify: bool = False) -> None:
    """Decodes the test split of `data` (SyntheticDataModule arguments: task, test_domain, ...) with full, draft,
    draft_imit, ssd and, with `draft_verify`, Draft & Verify; writes out (a metrics.json like the test stage's)."""
    s = settings
    vlm, spec, tokenizer = _load(backbone, checkpoint)
    n, imitation, eos = spec.n, spec.imitation, vlm.eos_token_id
    skip = _skip_set(vlm, s, seed, backbone, data, max_new_tokens) if draft_verify else None

    def decoders(model: SplitVLM) -> dict[str, BatchDecoder]:
        imit = copy.deepcopy(imitation).to(next(model.parameters()).dtype)  # the recheck's model is float64
        found = {"full": build_decoder("full", model.decoder, eos),
                 "draft": build_decoder("draft", model.decoder, eos, DraftSpec(n)),
                 "draft_imit": build_decoder("draft_imit", model.decoder, eos, DraftSpec(n, imit)),
                 "ssd": build_decoder("ssd", model.decoder, eos, DraftSpec(n, imit, s.draft))}
        if skip is not None:
            found["draft_verify"] = build_decoder("draft_verify", model.decoder, eos,
                                                  DraftSpec(draft=s.draft, confidence_threshold=s.dv_threshold),
                                                  skip_layers=skip, adaptive_threshold=AdaptiveThreshold())
        return found

    batches = split_batches(backbone, s, "test", **data)
    result = evaluate_decoders(vlm, decoders, batches, tokenizer, max_new_tokens, meteor=False)
    atomic_write_json(out, {**result, "n": n, "L": vlm.decoder.num_layers, "d": s.draft, "data": data,
                            "max_new_tokens": max_new_tokens, "skip_layers": None if skip is None else list(skip)})


def run_layerskip_eval(backbone: Path, n: int, settings: Settings, data: dict[str, Any], max_new_tokens: int,
                       out: Path) -> None:
    """LayerSkip's row: the LayerSkip-trained `backbone` decodes the test split of `data` greedily and with SSD
    through its plain early exit at n (no imitation network); writes out with that SSD as mode "layerskip" (its
    speedup and identity against the same backbone's plain decoding) and that plain decoding as "layerskip_full"."""
    s = settings
    vlm = load_backbone(str(backbone)).eval()
    tokenizer = load_processor(str(backbone)).tokenizer
    eos = vlm.eos_token_id

    def decoders(model: SplitVLM) -> dict[str, BatchDecoder]:
        return {"full": build_decoder("full", model.decoder, eos),
                "layerskip": build_decoder("ssd", model.decoder, eos, DraftSpec(n, None, s.draft))}

    result = evaluate_decoders(vlm, decoders, split_batches(backbone, s, "test", **data), tokenizer, max_new_tokens,
                               meteor=False)
    metrics = {k.replace("test/full/", "test/layerskip_full/", 1): v for k, v in result["metrics"].items()}
    metrics["test/layerskip/n"] = n
    atomic_write_json(out, {**result, "metrics": metrics, "n": n, "L": vlm.decoder.num_layers, "d": s.draft,
                            "data": data, "max_new_tokens": max_new_tokens})


def run_length_eval(backbone: Path, checkpoint: Path, settings: Settings, data: dict[str, Any], out: Path) -> None:
    """Plain decoding and SSD at each output length of `settings.length_caps`, end-of-sequence off, on the first
    `settings.length_images` test images of `data`; writes out (JSON: one evaluate_decoders result per cap)."""
    s = settings
    vlm, spec, tokenizer = _load(backbone, checkpoint)
    n, imitation = spec.n, spec.imitation

    def decoders(model: SplitVLM) -> dict[str, BatchDecoder]:
        imit = copy.deepcopy(imitation).to(next(model.parameters()).dtype)
        return {"full": build_decoder("full", model.decoder, ()),
                "ssd": build_decoder("ssd", model.decoder, (), DraftSpec(n, imit, s.draft))}

    batches = split_batches(backbone, s, "test", images=s.length_images, batch_size=1, **data)
    caps = {str(cap): evaluate_decoders(vlm, decoders, batches, tokenizer, cap) for cap in s.length_caps}
    atomic_write_json(out, {"caps": caps, "n": n, "L": vlm.decoder.num_layers, "d": s.draft,
                            "images": len(batches), "data": data})
