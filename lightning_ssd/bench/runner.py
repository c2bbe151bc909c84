"""Runs every decoding method on the same model and inputs, round-robin over repeats, and reports medians.

Each batch size is benchmarked on its own: the same images, cut into left-padded batches of that size, and every
method decodes each batch as one batch. Timing definitions (all per run over the same samples):

- e2e: vision encoder + prompt prefill + decoding, wall clock around the whole call;
- decode: producing tokens 2..T after the first one. The engine times it directly; for transformers'
  generate it is e2e(max_new_tokens) - e2e(1 token), both medians of the same repeats;
- throughput: tokens decoded per second over the whole batch (the prefill's first tokens excluded).

Speedups are against the FASTER of transformers' batched generate and the engine's own batched plain loop, at the
same batch size and generation settings, and the report names which one that was, so no speedup is borrowed from
a slow baseline. Under greedy decoding every method's tokens are compared with transformers' on the same batches.
Every method is warmed up (`warmup` untimed runs), the methods are timed in turn within each repeat, so that a busy
CPU slows them alike, and medians over the repeats are reported. A speculative method's speedup above what its
measured acceptance allows (`lightning_ssd.timing`) is flagged: a warning, `speedup_flag` in its record and a mark
in the table.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from transformers import GenerationConfig, ProcessorMixin

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.bench.inputs import benchmark_inputs
from lightning_ssd.bench.memory import PeakMemory
from lightning_ssd.decoding.acceptance import with_strategy
from lightning_ssd.decoding.checks import check_trained_exit_layer, parse_draft
from lightning_ssd.decoding.cost import CostModel, measure_cost_model
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import BatchDecoder, generate
from lightning_ssd.decoding.result import GenerationResult
from lightning_ssd.decoding.skip_drafter import AdaptiveThreshold
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.errors import UsageError
from lightning_ssd.threads import set_threads
from lightning_ssd.timing import FLAG, check_speedup, marked, speedup_bound


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
        num_samples: test images decoded by each method per repeat.
        batch_sizes: batch sizes to benchmark, each on its own.
        max_new_tokens: tokens generated per sample.
        repeats: timed repeats per method (medians are reported).
        warmup: untimed runs first.
        task: "caption" (short outputs) or "long" (detailed description prompt).
        do_sample: sample instead of greedy decoding (False: greedy).
        temperature: sampling temperature.
        top_k: sampling top-k.
        top_p: sampling top-p.
        seed: sampling seed.
        skip_layers: run the Draft & Verify baseline with this skip set (layers its draft skips).
        skip_search_trials: without skip_layers, find the skip set first by this many TPE trials on
            `skip_search_samples` validation images (0: no Draft & Verify method).
        dv_threshold: Draft & Verify's starting draft-exiting threshold, adapted to the acceptance rate as the
            original does; it drafts up to the largest integer d of `drafts`.
        device: the torch device to run on.
        dtype: the model's torch dtype, by name ("float32").
        threads: torch CPU threads (None: the default rule of `lightning_ssd.threads`, 0: leave torch's count
            alone).
    """

    backbone: str = "small-llava"
    n: int | None = None
    drafts: list[str] = field(default_factory=lambda: ["4", "dynamic"])
    confidence_thresholds: list[float | None] = field(default_factory=lambda: [None])
    imitation: str = "identity"
    redundant_deep_layers: bool = False
    num_samples: int = 4
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    max_new_tokens: int = 32
    repeats: int = 3
    warmup: int = 1
    task: str = "caption"
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    skip_layers: list[int] | None = None
    skip_search_trials: int = 0
    skip_search_samples: int = 8
    dv_threshold: float = 0.8
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None


@dataclass
class MethodRecord:
    """One method at one batch size: medians over the repeats, and acceptance figures for speculative methods."""

    method: str
    batch_size: int
    n: int | None
    d: str | None
    imitation: bool
    confidence_threshold: float | None
    skip_layers: list[int] | None
    tokens_identical: bool | None  # None under sampling, where outputs are random
    num_tokens: int
    decode_s: float
    e2e_s: float
    speedup_decode: float
    speedup_e2e: float
    tokens_per_s: float
    peak_rss_mb: float
    mean_accepted_len: float | None = None
    acceptance_rate: float | None = None
    acceptance_by_position: list[float] | None = None
    deep_passes: int | None = None
    draft_time_s: float | None = None
    verify_time_s: float | None = None
    predicted_speedup: float | None = None  # SSD's cost model (decoding/cost.py); None for Draft & Verify
    ceiling_speedup: float | None = None
    fraction_of_predicted: float | None = None
    speedup_bound: float | None = None  # the most that tau allows (lightning_ssd.timing); speculative methods only
    speedup_flag: str | None = None  # why the speedup cannot be right, when it exceeds that bound


@dataclass
class _Method:
    name: str
    run: Callable[[dict, int], GenerationResult | torch.Tensor]
    n: int | None = None
    draft: str | None = None
    imitation: bool = False
    confidence_threshold: float | None = None
    skip_layers: list[int] | None = None
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


def bench_spec(imitation: str, n: int | None, vlm: SplitVLM, backbone: str = "the backbone") -> DraftSpec:
    """The benchmark's draft from its --imitation and --n: a checkpoint's or draft folder's n and network ("none":
    the plain early exit, "identity": an untrained residual network), at --n if given, else the checkpoint's n, else
    L // 4. A --n that differs from the checkpoint's is refused. `backbone` is the --backbone `vlm` was loaded from."""
    from lightning_ssd.models.components.imitation import ImitationNetwork

    default = max(1, vlm.decoder.num_layers // 4)
    if imitation in ("none", "identity"):
        net = None if imitation == "none" else ImitationNetwork(vlm.decoder.hidden_size).eval()
        return DraftSpec(default if n is None else n, net, prefix="--").check(vlm.decoder)
    from lightning_ssd.models.checkpoint import load_draft_spec

    spec = load_draft_spec(imitation, vlm, prefix="--", backbone=backbone, source="imitation")
    check_trained_exit_layer(n, spec.n, spec.setting("n"), f"the imitation network of --imitation {imitation}")
    return spec


def _hf_new_tokens(vlm: SplitVLM, batch: dict, out: torch.Tensor) -> list[list[int]]:
    """Each row's new tokens from transformers' generate output, cut after the first EOS."""
    skip = 1 if vlm.decoder.is_encoder_decoder else batch["input_ids"].shape[1]
    eos = set(vlm.eos_token_id)
    rows = []
    for tokens in out[:, skip:].tolist():
        end = next((i + 1 for i, t in enumerate(tokens) if t in eos), len(tokens))
        rows.append(tokens[:end])
    return rows


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def generation_config(cfg: BenchConfig, vlm: SplitVLM) -> GenerationConfig:
    """The checkpoint's generation config with the benchmark's decoding strategy."""
    return with_strategy(vlm.model.generation_config, cfg.do_sample, cfg.temperature, cfg.top_k, cfg.top_p)


def _methods(cfg: BenchConfig, vlm: SplitVLM, spec: DraftSpec, skip_layers: list[int] | None) -> list[_Method]:
    dec, eos = vlm.decoder, vlm.eos_token_id
    config = generation_config(cfg, vlm)
    device = next(vlm.parameters()).device
    strategy = "sample" if cfg.do_sample else "greedy"

    def engine(decoder: BatchDecoder) -> Callable[[dict, int], GenerationResult]:
        def run(batch: dict, max_new: int) -> GenerationResult:
            generator = torch.Generator(device).manual_seed(cfg.seed) if cfg.do_sample else None
            return generate(vlm, decoder, **batch, max_new_tokens=max_new, generation_config=config,
                            generator=generator)

        return run

    def transformers_generate(batch: dict, max_new: int) -> torch.Tensor:
        torch.manual_seed(cfg.seed)
        with torch.inference_mode():
            return vlm.model.generate(**batch, generation_config=config, max_new_tokens=max_new)

    def make(mode: str, draft: str = "4", threshold: float | None = None) -> BatchDecoder:
        return build_decoder(mode, dec, eos, replace(spec, draft=draft, confidence_threshold=threshold))

    n, imitation = spec.n, spec.imitation

    methods = [_Method(f"transformers_{strategy}", transformers_generate), _Method(strategy, engine(make("full")))]
    for d in cfg.drafts:
        for threshold in cfg.confidence_thresholds:
            name = ("ssd_dynamic" if d == "dynamic" else f"ssd_d{d}") + ("" if threshold is None else f"_c{threshold}")
            methods.append(_Method(name, engine(make("ssd", d, threshold)), n, d, imitation is not None, threshold))
    methods.append(_Method("draft_only", engine(make("draft")), n))
    if imitation is not None:
        methods.append(_Method("draft_only_imitation", engine(make("draft_imit")), n, None, True))
    if skip_layers is not None:
        d = _dv_draft(cfg)
        decoder = build_decoder("draft_verify", dec, eos, DraftSpec(draft=d, confidence_threshold=cfg.dv_threshold),
                                skip_layers=skip_layers, adaptive_threshold=AdaptiveThreshold())
        methods.append(_Method("draft_verify", engine(decoder), None, str(d), False, cfg.dv_threshold, skip_layers))
    return methods


def _dv_draft(cfg: BenchConfig) -> int:
    return max((d for d in map(parse_draft, cfg.drafts) if isinstance(d, int)), default=8)


def find_skip_layers(cfg: BenchConfig, vlm: SplitVLM, processor: ProcessorMixin, log: Callable[[str], None]
                     ) -> list[int] | None:
    """The Draft & Verify skip set: the configured one, or TPE's best on held-out validation images."""
    if cfg.skip_layers is not None or cfg.skip_search_trials == 0:
        return cfg.skip_layers
    from lightning_ssd.nas.skip_set import search_skip_set

    device = next(vlm.parameters()).device
    batches = benchmark_inputs(processor, vlm.family, cfg.skip_search_samples, cfg.task, split="val")
    with torch.inference_mode():
        prompts = [vlm.encode(**{k: v.to(device) for k, v in b.items()}) for b in batches]
    log(f"bench: Draft & Verify skip set by {cfg.skip_search_trials} TPE trials on {len(prompts)} validation images")
    found = search_skip_set(vlm, prompts, n_trials=cfg.skip_search_trials, seed=cfg.seed, draft=_dv_draft(cfg),
                            confidence_threshold=cfg.dv_threshold, max_new_tokens=cfg.max_new_tokens)
    log(f"bench: skip set {list(found.skip_layers)} (predicted speedup {found.score:.2f}x)")
    return list(found.skip_layers)


def _time_method(m: _Method, vlm: SplitVLM, batches: list[dict], cfg: BenchConfig, device: torch.device) -> None:
    e2e = decode = e2e_one = 0.0
    tokens, results = [], []
    with m.memory.track():
        for batch in batches:
            start = _clock(device)
            out = m.run(batch, cfg.max_new_tokens)
            e2e += _clock(device) - start
            if isinstance(out, GenerationResult):
                decode += out.decode_time_s
                tokens += out.tokens
                results.append(out)
            else:
                tokens += _hf_new_tokens(vlm, batch, out)
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


def _record(m: _Method, batch_size: int, reference: list[list[int]] | None, baseline: dict,
            cost: CostModel | None) -> MethodRecord:
    decode, e2e = statistics.median(m.decode), statistics.median(m.e2e)
    num_tokens = sum(len(t) for t in m.tokens)
    record = MethodRecord(
        method=m.name,
        batch_size=batch_size,
        n=m.n,
        d=m.draft,
        imitation=m.imitation,
        confidence_threshold=m.confidence_threshold,
        skip_layers=m.skip_layers,
        tokens_identical=None if reference is None else m.tokens == reference,
        num_tokens=num_tokens,
        decode_s=decode,
        e2e_s=e2e,
        speedup_decode=baseline["decode_s"] / decode,
        speedup_e2e=baseline["e2e_s"] / e2e,
        tokens_per_s=(num_tokens - len(m.tokens)) / decode,
        peak_rss_mb=m.memory.peak_mb,
    )
    if m.results and m.draft is not None:
        merged = _merge(m.results)
        record.mean_accepted_len = merged.mean_accepted_length
        record.acceptance_rate = merged.acceptance_rate
        record.acceptance_by_position = merged.acceptance_by_position
        record.deep_passes = merged.deep_passes
        record.draft_time_s, record.verify_time_s = merged.draft_time_s, merged.verify_time_s
        if cost is not None and m.skip_layers is None:  # the cost model is that of the shallow draft at n
            record.predicted_speedup = cost.predicted_speedup(merged.acceptance_rate,
                                                              [c.drafted for c in merged.cycles])
            record.ceiling_speedup = cost.ceiling
            record.fraction_of_predicted = record.speedup_decode / record.predicted_speedup
        record.speedup_bound = speedup_bound(m.results)
    return record


def _flag(records: list[MethodRecord], baseline: dict) -> None:
    """Checks each speculative method's speedup per decoded token (the decode-time ratio when its tokens are the
    baseline's) against the bound its acceptance allows."""
    base = next(r for r in records if r.method == baseline["decode_method"])
    for r in records:
        if r.speedup_bound is not None:
            speedup = r.speedup_decode if r.tokens_identical else r.tokens_per_s / base.tokens_per_s
            r.speedup_flag = check_speedup(speedup, r.speedup_bound, f"bench {r.method} at batch {r.batch_size}")


def _check(cfg: BenchConfig) -> None:
    if cfg.repeats < 1 or cfg.num_samples < 1 or cfg.max_new_tokens < 2:
        raise UsageError("bench needs repeats >= 1, num_samples >= 1 and max_new_tokens >= 2")
    if not cfg.batch_sizes or min(cfg.batch_sizes) < 1:
        raise UsageError(f"bench --batch-size must be >= 1, got {cfg.batch_sizes}")
    if cfg.skip_search_trials < 0 or cfg.skip_search_samples < 1:
        raise UsageError("bench --skip-search-trials must be >= 0 and --skip-search-samples >= 1, got "
                         f"{cfg.skip_search_trials} and {cfg.skip_search_samples}")


def _run_batch_size(cfg: BenchConfig, vlm: SplitVLM, processor: ProcessorMixin, spec: DraftSpec,
                    skip_layers: list[int] | None, batch_size: int, cost: CostModel, log: Callable[[str], None]
                    ) -> tuple[dict, list[MethodRecord]]:
    device = next(vlm.parameters()).device
    dtype = getattr(torch, cfg.dtype)
    batches = [{k: v.to(device) for k, v in b.items()}
               for b in benchmark_inputs(processor, vlm.family, cfg.num_samples, cfg.task, batch_size=batch_size)]
    batches = [{**b, "pixel_values": b["pixel_values"].to(dtype)} for b in batches]
    methods = _methods(cfg, vlm, spec, skip_layers)
    for m in methods:
        m.memory = PeakMemory(device)
        for _ in range(cfg.warmup):
            m.run(batches[0], cfg.max_new_tokens)
    for r in range(cfg.repeats):
        for m in methods:
            _time_method(m, vlm, batches, cfg, device)
            log(f"  batch {batch_size} repeat {r + 1}/{cfg.repeats} {m.name:22s} e2e {m.e2e[-1]:.3f}s "
                f"decode {m.decode[-1]:.3f}s")
    hf, own = methods[0], methods[1]
    faster = min((hf, own), key=lambda m: statistics.median(m.decode))
    faster_e2e = min((hf, own), key=lambda m: statistics.median(m.e2e))
    baseline = {
        "batch_size": batch_size,
        "decode_method": faster.name,
        "decode_s": statistics.median(faster.decode),
        "e2e_method": faster_e2e.name,
        "e2e_s": statistics.median(faster_e2e.e2e),
    }
    reference = None if cfg.do_sample else hf.tokens
    records = [_record(m, batch_size, reference, baseline, cost) for m in methods]
    _flag(records, baseline)
    return baseline, records


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """Runs the benchmark and returns the report (config, cost model, baselines, one record per method and batch
    size; `baseline` is that of the first batch size)."""
    _check(cfg)
    set_threads(cfg.threads)
    device = torch.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    vlm = load_backbone(cfg.backbone, dtype=dtype).to(device)
    L = vlm.decoder.num_layers
    spec = bench_spec(cfg.imitation, cfg.n, vlm, cfg.backbone)
    n, imitation = spec.n, spec.imitation
    if cfg.redundant_deep_layers:
        make_redundant(vlm, n)
    if imitation is not None:
        imitation.to(device=device, dtype=dtype)
    generation_config(cfg, vlm)  # refuses impossible sampling settings before anything runs
    processor = load_processor(cfg.backbone)
    context = benchmark_inputs(processor, vlm.family, 1, cfg.task)[0]["input_ids"].shape[1]
    cost, cost_report = measure_cost_model(vlm.decoder, n, imitation, context=context)
    strategy = f"sampling (T={cfg.temperature}, top_k={cfg.top_k}, top_p={cfg.top_p})" if cfg.do_sample else "greedy"
    log(f"bench: {cfg.backbone} (L={L}, n={n}) on {device}, {cfg.num_samples} samples x {cfg.max_new_tokens} "
        f"tokens, {strategy}, batch sizes {cfg.batch_sizes}")
    skip_layers = find_skip_layers(cfg, vlm, processor, log)
    baselines, records = {}, []
    for batch_size in cfg.batch_sizes:
        baseline, rows = _run_batch_size(cfg, vlm, processor, spec, skip_layers, batch_size, cost, log)
        baselines[str(batch_size)] = baseline
        records += rows
    return {
        "config": asdict(cfg),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "L": L,
        "n": n,
        "skip_layers": skip_layers,
        "baseline": baselines[str(cfg.batch_sizes[0])],
        "baselines": baselines,
        "cost_model": {**asdict(cost), "ceiling_speedup": cost.ceiling, **cost_report},
        "methods": [asdict(r) for r in records],
    }


def format_table(report: dict) -> str:
    """A fixed-width table of the report's records, for the terminal and the README."""
    cols = ["batch_size", "method", "tokens_identical", "speedup_decode", "speedup_e2e", "tokens_per_s",
            "mean_accepted_len", "acceptance_rate", "predicted_speedup", "fraction_of_predicted", "peak_rss_mb"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    flags = []
    for rec in report["methods"]:
        cells = []
        for c in cols:
            v = rec.get(c)
            cells.append(f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v))
        cells[cols.index("speedup_decode")] = marked(cells[cols.index("speedup_decode")], bool(rec.get("speedup_flag")))
        flags += [rec["speedup_flag"]] if rec.get("speedup_flag") else []
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\n{FLAG} {flag}" for flag in flags]
    for b in report["baselines"].values():
        lines.append(f"\nbatch {b['batch_size']} baseline: decode {b['decode_method']} ({b['decode_s']:.3f}s), "
                     f"e2e {b['e2e_method']} ({b['e2e_s']:.3f}s)")
    lines.append(f"ceiling {report['cost_model']['ceiling_speedup']:.2f}x")
    return "\n".join(lines)
