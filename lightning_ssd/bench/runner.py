"""Runs every decoding method on the same model and inputs, round-robin over repeats, and reports medians.

Timing definitions (all per run over the same samples, batch size 1 each):
- e2e: vision encoder + prompt prefill + decoding, wall clock around the whole call;
- decode: producing tokens 2..T after the first one. The engine times it directly; for transformers'
  generate it is e2e(max_new_tokens) - e2e(1 token), both medians of the same repeats.
Speedups are against the FASTER of transformers' greedy generate and the engine's own plain greedy loop, and the
report names which one that was, so no speedup is borrowed from a slow baseline.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.bench.inputs import benchmark_inputs
from lightning_ssd.bench.memory import PeakMemory
from lightning_ssd.decoding.cost import CostModel, measure_cost_model
from lightning_ssd.decoding.engine import DraftOnlyDecoder, GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import SequenceDecoder, generate
from lightning_ssd.decoding.result import GenerationResult


@dataclass
class BenchConfig:
    """What to benchmark.

    Args:
        backbone: preset name or local checkpoint folder.
        n: draft exit layer; default L // 4.
        drafts: SSD draft lengths to run: integers d and/or "dynamic" (paper eq. 5).
        confidence_thresholds: draft confidence thresholds to run each d with (None: always draft d tokens).
        imitation: "none", "identity" (an untrained residual imitation net) or an imitation checkpoint file.
        redundant_deep_layers: zero what layers n..L write to the residual stream (alpha = 1 by construction).
        num_samples: test images (batch size 1 each).
        max_new_tokens: tokens generated per sample.
        repeats: timed repeats per method (medians are reported); warmup: untimed runs first.
        task: "caption" (short outputs) or "long" (detailed description prompt).
        device, dtype, threads: where and how to run.
    """

    backbone: str = "small-llava"
    n: int | None = None
    drafts: list[str] = field(default_factory=lambda: ["4", "dynamic"])
    confidence_thresholds: list[float | None] = field(default_factory=lambda: [None])
    imitation: str = "identity"
    redundant_deep_layers: bool = False
    num_samples: int = 4
    max_new_tokens: int = 32
    repeats: int = 3
    warmup: int = 1
    task: str = "caption"
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None


@dataclass
class _Method:
    name: str
    run: Callable[[dict, int], GenerationResult | torch.Tensor]
    n: int | None = None
    draft: str | None = None
    imitation: bool = False
    confidence_threshold: float | None = None
    e2e: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    e2e_one: list[float] = field(default_factory=list)
    results: list[GenerationResult] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)
    memory: PeakMemory | None = None


def make_redundant(vlm: SplitVLM, n: int) -> None:
    """Zeroes the output projections (weights and biases) of layers n..L: x_L == x_n, compute unchanged."""
    with torch.no_grad():
        for idx in range(n, vlm.decoder.num_layers):
            for linear in vlm.decoder.output_projections(idx):
                linear.weight.zero_()
                if linear.bias is not None:
                    linear.bias.zero_()


def load_imitation(spec: str, vlm: SplitVLM) -> nn.Module | None:
    from lightning_ssd.models.components.imitation import ImitationNetwork

    if spec == "none":
        return None
    if spec == "identity":
        return ImitationNetwork(vlm.decoder.hidden_size).eval()
    from lightning_ssd.models.checkpoint import load_imitation_network

    return load_imitation_network(spec, vlm).eval()


def _hf_new_tokens(vlm: SplitVLM, batch: dict, out: torch.Tensor) -> list[int]:
    skip = 1 if vlm.decoder.is_encoder_decoder else batch["input_ids"].shape[1]
    tokens = out[0, skip:].tolist()
    eos = set(vlm.eos_token_id)
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _methods(cfg: BenchConfig, vlm: SplitVLM, n: int, imitation: nn.Module | None) -> list[_Method]:
    dec, eos = vlm.decoder, vlm.eos_token_id

    def engine(decoder: SequenceDecoder) -> Callable[[dict, int], GenerationResult]:
        return lambda batch, max_new: generate(vlm, decoder, **batch, max_new_tokens=max_new)

    def transformers_generate(batch: dict, max_new: int) -> torch.Tensor:
        with torch.inference_mode():
            return vlm.model.generate(**batch, do_sample=False, max_new_tokens=max_new)

    methods = [
        _Method("transformers_greedy", transformers_generate),
        _Method("greedy", engine(GreedyDecoder(dec, eos))),
    ]
    for d in cfg.drafts:
        for threshold in cfg.confidence_thresholds:
            name = ("ssd_dynamic" if d == "dynamic" else f"ssd_d{d}") + ("" if threshold is None else f"_c{threshold}")
            ssd = SelfSpeculativeDecoder(dec, n, imitation, d, eos, confidence_threshold=threshold)
            methods.append(_Method(name, engine(ssd), n, d, imitation is not None, threshold))
    methods.append(_Method("draft_only", engine(DraftOnlyDecoder(dec, n, None, eos)), n))
    if imitation is not None:
        methods.append(_Method("draft_only_imitation", engine(DraftOnlyDecoder(dec, n, imitation, eos)), n, None, True))
    return methods


def _time_method(m: _Method, vlm: SplitVLM, samples: list[dict], cfg: BenchConfig, device: torch.device) -> None:
    e2e = decode = e2e_one = 0.0
    tokens, results = [], []
    with m.memory.track():
        for batch in samples:
            start = _clock(device)
            out = m.run(batch, cfg.max_new_tokens)
            e2e += _clock(device) - start
            if isinstance(out, GenerationResult):
                decode += out.decode_time_s
                tokens.append(out.tokens[0])
                results.append(out)
            else:
                tokens.append(_hf_new_tokens(vlm, batch, out))
                start = _clock(device)
                m.run(batch, 1)
                e2e_one += _clock(device) - start
    m.e2e.append(e2e)
    m.tokens = tokens
    if results:
        m.decode.append(decode)
        m.results = results
    else:
        m.e2e_one.append(e2e_one)
        m.decode.append(e2e - e2e_one)


def _merge(results: list[GenerationResult]) -> GenerationResult:
    return GenerationResult(tuple(s for r in results for s in r.sequences))


def _record(m: _Method, reference: list[list[int]], baseline: dict, cost: CostModel | None) -> dict:
    decode, e2e = statistics.median(m.decode), statistics.median(m.e2e)
    num_tokens = sum(len(t) for t in m.tokens)
    record = {
        "method": m.name,
        "n": m.n,
        "d": m.draft,
        "imitation": m.imitation,
        "confidence_threshold": m.confidence_threshold,
        "tokens_identical": m.tokens == reference,
        "num_tokens": num_tokens,
        "decode_s": decode,
        "e2e_s": e2e,
        "speedup_decode": baseline["decode_s"] / decode,
        "speedup_e2e": baseline["e2e_s"] / e2e,
        "tokens_per_s": (num_tokens - len(m.tokens)) / decode,
        "peak_rss_mb": m.memory.peak_mb,
    }
    if m.results and m.draft is not None:
        merged = _merge(m.results)
        record.update(
            mean_accepted_len=merged.mean_accepted_length,
            acceptance_rate=merged.acceptance_rate,
            acceptance_by_position=merged.acceptance_by_position,
            deep_passes=merged.deep_passes,
            draft_time_s=merged.draft_time_s,
            verify_time_s=merged.verify_time_s,
        )
        if cost is not None:
            alpha = merged.acceptance_rate
            predicted = cost.predicted_speedup(alpha, [c.drafted for c in merged.cycles])
            record.update(
                predicted_speedup=predicted,
                ceiling_speedup=cost.ceiling,
                fraction_of_predicted=record["speedup_decode"] / predicted,
            )
    return record


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """Runs the benchmark and returns the report (config, cost model, baseline, one record per method)."""
    if cfg.repeats < 1 or cfg.num_samples < 1 or cfg.max_new_tokens < 2:
        raise ValueError("bench needs repeats >= 1, num_samples >= 1 and max_new_tokens >= 2")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    vlm = load_backbone(cfg.backbone, dtype=getattr(torch, cfg.dtype)).to(device)
    L = vlm.decoder.num_layers
    imitation = load_imitation(cfg.imitation, vlm)
    trained_n = getattr(imitation, "n", None)
    if trained_n is not None and cfg.n not in (None, trained_n):
        raise ValueError(f"--n {cfg.n} differs from the layer n={trained_n} the imitation checkpoint was trained at")
    n = cfg.n if cfg.n is not None else trained_n if trained_n is not None else max(1, L // 4)
    if cfg.redundant_deep_layers:
        make_redundant(vlm, n)
    if imitation is not None:
        imitation = imitation.to(device=device, dtype=getattr(torch, cfg.dtype))
    processor = load_processor(cfg.backbone)
    samples = [
        {k: v.to(device) for k, v in s.items()}
        for s in benchmark_inputs(processor, vlm.family, cfg.num_samples, cfg.task)
    ]
    samples = [{**s, "pixel_values": s["pixel_values"].to(getattr(torch, cfg.dtype))} for s in samples]
    methods = _methods(cfg, vlm, n, imitation)
    for m in methods:
        m.memory = PeakMemory(device)
    log(f"bench: {cfg.backbone} (L={L}, n={n}) on {device}, {len(samples)} samples x {cfg.max_new_tokens} tokens")
    for m in methods:
        for _ in range(cfg.warmup):
            m.run(samples[0], cfg.max_new_tokens)
    for r in range(cfg.repeats):
        for m in methods:
            _time_method(m, vlm, samples, cfg, device)
            log(f"  repeat {r + 1}/{cfg.repeats} {m.name:22s} e2e {m.e2e[-1]:.3f}s decode {m.decode[-1]:.3f}s")
    hf, own = methods[0], methods[1]
    faster = min((hf, own), key=lambda m: statistics.median(m.decode))
    faster_e2e = min((hf, own), key=lambda m: statistics.median(m.e2e))
    baseline = {
        "decode_method": faster.name,
        "decode_s": statistics.median(faster.decode),
        "e2e_method": faster_e2e.name,
        "e2e_s": statistics.median(faster_e2e.e2e),
    }
    cost, cost_report = measure_cost_model(vlm.decoder, n, imitation, context=samples[0]["input_ids"].shape[1])
    records = [_record(m, hf.tokens, baseline, cost) for m in methods]
    return {
        "config": asdict(cfg),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "L": L,
        "n": n,
        "baseline": baseline,
        "cost_model": {**asdict(cost), "ceiling_speedup": cost.ceiling, **cost_report},
        "methods": records,
    }


def format_table(report: dict) -> str:
    """A fixed-width table of the report's records, for the terminal and the README."""
    cols = ["method", "tokens_identical", "speedup_decode", "speedup_e2e", "tokens_per_s", "mean_accepted_len",
            "acceptance_rate", "predicted_speedup", "fraction_of_predicted", "peak_rss_mb"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in report["methods"]:
        cells = []
        for c in cols:
            v = rec.get(c, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    b = report["baseline"]
    lines.append(f"\nbaseline: decode {b['decode_method']} ({b['decode_s']:.3f}s), e2e {b['e2e_method']} "
                 f"({b['e2e_s']:.3f}s); ceiling {report['cost_model']['ceiling_speedup']:.2f}x")
    return "\n".join(lines)
