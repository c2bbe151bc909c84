"""Decoding a split in-process with several decoders and scoring it as the test stage does.

For the stages that are no LightningCLI run (Draft & Verify, the sweep over d): every decoder decodes each batch in
turn, captions are scored with `CaptionScores`, speedup = the full model's seconds per token / the decoder's on the
same batches (prefill included, as `DecodingEvaluator`, after one untimed decode of the first batch by every
decoder; a speedup above what its tau allows is warned about, see `lightning_ssd.timing`), and `identical` is the
fraction of sequences equal to the full model's greedy output, rechecked in float64 where it is below 1 (draft-only
decoders, which are not lossless, are not compared). Scalars use the test stage's names (`test/<mode>/<score>`,
`test/<mode>_identical`), so one reader serves both kinds of stage. Dialog batches (with 100 candidate answers) are
also ranked by what each decoder wrote (`test/<mode>/MRR`, `R@1`, ...), and every sequence's length, cycles,
accepted and judged drafts and seconds are kept (`per_sequence`) for the output-length buckets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml

from lightning_ssd.backbones.vlm import SplitVLM, vision_inputs
from lightning_ssd.configs import EXPERIMENTS
from lightning_ssd.decoding.generate import BatchDecoder, generate
from lightning_ssd.decoding.result import SequenceResult
from lightning_ssd.metrics.acceptance import AcceptanceStats
from lightning_ssd.metrics.visdial import VisDialRanking, answer_match_scores
from lightning_ssd.models.evaluation import as_dict, first_mismatch, quality_metric
from lightning_ssd.reproduce.settings import Settings
from lightning_ssd.timing import check_speedup

REFERENCE = "full"
VERIFIED_DRAFTS = ("draft_verify",)


def is_draft_only(mode: str) -> bool:
    """Decoders that emit the shallow model's own tokens, unverified, are named "draft" or "draft_<variant>"
    (draft_imit, the size grid's draft_<capacity>); Draft & Verify's "draft_verify" verifies."""
    return mode == "draft" or mode.startswith("draft_") and mode not in VERIFIED_DRAFTS


def split_batches(backbone: str | Path, settings: Settings, split: str, images: int | None = None,
                  batch_size: int | None = None, **data: Any) -> list[dict[str, Any]]:
    """Batches of the embedded benchmark's `split` ("val" or "test") as the stages see them, first `images` only:
    `batch_size` images each, by default the settings' test batch for "test" and the configs' eval batch for "val";
    `data` overrides the data module's arguments (task, test_domain, max_target_length)."""
    from lightning_ssd.data import SyntheticDataModule

    init = yaml.safe_load((EXPERIMENTS / "_base" / "data" / "synthetic.yaml").read_text())["init_args"] | data
    init |= {"num_train": settings.num_train, "num_val": settings.num_val, "num_test": settings.num_test,
             "eval_batch_size": batch_size or (settings.test_batch_size if split == "test" else None)
             or settings.eval_batch_size or init["eval_batch_size"]}
    data = SyntheticDataModule(backbone=str(backbone), **init)
    data.setup("validate" if split == "val" else "test")
    loader = data.val_dataloader() if split == "val" else data.test_dataloader()
    batches, seen = [], 0
    for batch in loader:
        if images is not None and seen >= images:
            break
        batches.append(batch)
        seen += len(batch["references"])
    return batches


def prompt_inputs(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """What `generate` / `SplitVLM.encode` take from a batch: the prompt and the image inputs."""
    return dict(input_ids=batch["prompt_input_ids"], attention_mask=batch["prompt_attention_mask"],
                **vision_inputs(batch))


DecoderSet = Callable[[SplitVLM], dict[str, BatchDecoder]]


def evaluate_decoders(vlm: SplitVLM, decoders_for: DecoderSet, batches: list[dict[str, Any]], tokenizer,
                      max_new_tokens: int, meteor: bool = False) -> dict[str, Any]:
    """Decodes `batches` with every decoder of `decoders_for(vlm)` (one of them named "full", the reference) and
    scores them.

    Returns {"metrics": {test/<mode>/<score>, test/<mode>/speedup, /tau, /alpha, test/<mode>_identical, ...},
    "acceptance_by_step": {mode: [...]}, "judged_by_step": {mode: [...]}, "mismatches": {mode: [...]},
    "per_sequence": {mode: [{length, cycles, accepted, judged, prefill_s, decode_s, text}]}, "references": [...]}
    (each sequence's reference texts, in the order of per_sequence). Where a
    decoder's output differs from the full model's, the batches are decoded again by `decoders_for` a float64 copy
    of `vlm`, and "float64" holds that run's identities and mismatches: the decoders are exact in exact arithmetic,
    so a difference that vanishes there was a float32 rounding tie.
    """
    result = _evaluate(vlm, decoders_for(vlm), batches, tokenizer, max_new_tokens, meteor)
    if any(result["mismatches"].values()):
        exact_vlm = copy.deepcopy(vlm).double()
        exact = _evaluate(exact_vlm, decoders_for(exact_vlm), [_float64(b) for b in batches], tokenizer,
                          max_new_tokens, meteor=False)
        result["float64"] = {"metrics": {k: v for k, v in exact["metrics"].items() if k.endswith("_identical")},
                             "mismatches": exact["mismatches"]}
    return result


def _float64(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}


@torch.inference_mode()
def _evaluate(vlm: SplitVLM, decoders: Mapping[str, BatchDecoder], batches: list[dict[str, Any]], tokenizer,
              max_new_tokens: int, meteor: bool) -> dict[str, Any]:
    if REFERENCE not in decoders:
        raise ValueError(f"evaluate_decoders needs a decoder named {REFERENCE!r}: the speed and identity reference")
    stats = {m: AcceptanceStats(sync_on_compute=False) for m in decoders}
    quality = {m: quality_metric(batches[0]["task"], meteor, sync_on_compute=False) for m in decoders}
    same: dict[str, list[bool]] = {m: [] for m in decoders if m != REFERENCE and not is_draft_only(m)}
    mismatches: dict[str, list[dict[str, Any]]] = {m: [] for m in same}
    ranking = {m: VisDialRanking(sync_on_compute=False) for m in decoders} if "candidates" in batches[0] else {}
    per_sequence: dict[str, list[dict[str, Any]]] = {m: [] for m in decoders}
    references: list[list[str]] = []
    for decoder in decoders.values():  # untimed: a first call pays one-time costs
        generate(vlm, decoder, **prompt_inputs(batches[0]), max_new_tokens=max_new_tokens)
    for batch in batches:
        references += [list(r) for r in batch["references"]]
        tokens = {}
        for mode, decoder in decoders.items():
            result = generate(vlm, decoder, **prompt_inputs(batch), max_new_tokens=max_new_tokens)
            stats[mode].update(result)
            texts = [t.strip() for t in tokenizer.batch_decode(result.tokens, skip_special_tokens=True)]
            quality[mode].update(texts, batch["references"])
            if mode in ranking:
                ranking[mode].update(answer_match_scores(texts, batch["candidates"]), batch["gt_index"])
            per_sequence[mode] += [{**_sequence_record(seq), "text": text}
                                   for seq, text in zip(result.sequences, texts, strict=True)]
            tokens[mode] = result.tokens
        for mode in same:
            found = [first_mismatch(sid, a, b) for sid, a, b in
                     zip(batch["sample_ids"], tokens[REFERENCE], tokens[mode], strict=True)]
            same[mode] += [m is None for m in found]
            mismatches[mode] += [asdict(m) for m in found if m is not None]
    computed = {m: stats[m].compute() for m in decoders}
    base = float(computed[REFERENCE]["seconds_per_token"])
    metrics: dict[str, float] = {}
    for mode, values in computed.items():
        metrics[f"test/{mode}/ms_per_token"] = 1000.0 * float(values["seconds_per_token"])
        metrics |= {f"test/{mode}/{k}": float(v) for k, v in as_dict(quality[mode].compute()).items()}
        if mode in ranking:
            metrics |= {f"test/{mode}/{k}": float(v) for k, v in ranking[mode].compute().items()}
        if mode != REFERENCE:
            metrics[f"test/{mode}/speedup"] = base / float(values["seconds_per_token"])
            check_speedup(metrics[f"test/{mode}/speedup"], float(values["speedup_bound"]), f"reproduce {mode}")
            metrics[f"test/{mode}/tau"] = float(values["tau"])
            metrics[f"test/{mode}/alpha"] = float(values["alpha"])
        if mode in same:
            metrics[f"test/{mode}_identical"] = sum(same[mode]) / max(len(same[mode]), 1)
    metrics["test/num_sequences"] = float(computed[REFERENCE]["sequences"])
    return {"metrics": metrics,
            "acceptance_by_step": {m: v["acceptance_by_step"].tolist() for m, v in computed.items()},
            "judged_by_step": {m: v["judged_by_step"].tolist() for m, v in computed.items()},
            "mismatches": mismatches, "per_sequence": per_sequence, "references": references}


def _sequence_record(seq: SequenceResult) -> dict[str, float]:
    """One sequence's length and acceptance counts (judged: drafts up to and including the first rejection) and its
    seconds, prefill and decode (in a batch, each row's share of the wall time)."""
    return {"length": len(seq.tokens), "cycles": len(seq.cycles), "accepted": sum(c.accepted for c in seq.cycles),
            "judged": sum(c.accepted + (c.rejected is not None) for c in seq.cycles),
            "prefill_s": seq.prefill_time_s, "decode_s": seq.decode_time_s}
