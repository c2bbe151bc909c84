"""Continuous-batching benchmarks: a stream of requests through `ContinuousEngine`, and per-token cost against length.

Stream: N requests (images of the embedded benchmark's test split) arrive at a fixed rate, or all at once, and are
decoded with at most `max_rows` live rows, by the full model alone and by SSD through the same engine. Per method it
reports throughput (generated tokens over the makespan), p50/p95 latency (arrival to last token) and time to first
token (arrival to the prefill's token). `load` sets the rate to a fraction of the plain engine's own request
throughput, measured first with every request at once (e.g. 0.7: plain decoding about 70% busy).

Length sweep: one request at a time, EOS ignored, for each max_new_tokens: per-token decode time of plain decoding and
of SSD through the engine (preallocated cache), and of both through batch `generate()` (transformers'
`DynamicCache`, which grows by concatenation), so that the two engines and the cost of length are seen side by side.

Every figure is the median over `repeats` runs, the methods taking turns within each repeat.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.bench.inputs import benchmark_inputs
from lightning_ssd.bench.runner import load_imitation, make_redundant
from lightning_ssd.decoding.continuous import ContinuousEngine, Request
from lightning_ssd.decoding.cost import measure_cost_model
from lightning_ssd.decoding.drafters import ShallowDrafter
from lightning_ssd.decoding.engine import GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.prompt_lookup import PromptLookupDrafter
from lightning_ssd.errors import UsageError
from lightning_ssd.threads import set_threads


@dataclass
class StreamConfig:
    """What to run.

    Args:
        backbone: preset name or local checkpoint folder.
        imitation: "none", "identity" or an imitation checkpoint (its n is used).
        n: draft exit layer (default: the checkpoint's, else L // 4).
        drafts: SSD draft settings to run: d, "dynamic" or "adaptive"; "lookup" runs prompt lookup instead.
        redundant_deep_layers: zero what layers n..L write to the residual stream (alpha = 1 by construction).
        num_requests: requests in the stream (0: the length sweep only).
        max_rows: live-row limits to run, each on its own.
        rate: arrivals per second (0: all at once); load: instead, this fraction of the plain engine's throughput.
        max_new_tokens: each request's budget.
        lengths: max_new_tokens of the length sweep (EOS ignored); empty: no sweep.
        repeats: runs per figure (medians reported).
        task: "caption" or "long" (the detailed-description prompt).
        threads: torch CPU threads (None: the default rule of `lightning_ssd.threads`).
    """

    backbone: str = "small-llava"
    imitation: str = "identity"
    n: int | None = None
    drafts: list[str] = field(default_factory=lambda: ["6"])
    redundant_deep_layers: bool = False
    num_requests: int = 64
    max_rows: list[int] = field(default_factory=lambda: [8])
    rate: float = 0.0
    load: float | None = None
    max_new_tokens: int = 32
    lengths: list[int] = field(default_factory=list)
    repeats: int = 3
    task: str = "caption"
    threads: int | None = None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_stream(engine: ContinuousEngine, requests: list[Request], rate: float) -> dict:
    """Feeds `requests` at `rate` per second (0: all at once) and steps until all are done; per-stream figures."""
    arrivals = [i / rate if rate > 0 else 0.0 for i in range(len(requests))]
    ids: dict[int, int] = {}
    first: dict[int, float] = {}
    done: dict[int, float] = {}
    start, submitted = time.perf_counter(), 0
    while submitted < len(requests) or engine.has_work:
        now = time.perf_counter() - start
        while submitted < len(requests) and arrivals[submitted] <= now:
            ids[engine.submit(requests[submitted])] = submitted
            submitted += 1
        if not engine.has_work:
            time.sleep(max(0.0, arrivals[submitted] - (time.perf_counter() - start)))
            continue
        for event in engine.step():
            t = time.perf_counter() - start
            first.setdefault(event.request_id, t)
            if event.finished:
                done[event.request_id] = t
    makespan = time.perf_counter() - start
    results = {ids[i]: engine.results.pop(i) for i in ids}
    tokens = [list(results[i].tokens) for i in range(len(requests))]
    latency = [done[i] - arrivals[ids[i]] for i in ids]
    ttft = [first[i] - arrivals[ids[i]] for i in ids]
    return {
        "tokens": tokens,
        "generated": sum(map(len, tokens)),
        "makespan_s": makespan,
        "tokens_per_s": sum(map(len, tokens)) / makespan,
        "p50_latency_s": _percentile(latency, 0.5),
        "p95_latency_s": _percentile(latency, 0.95),
        "p50_ttft_s": _percentile(ttft, 0.5),
        "p95_ttft_s": _percentile(ttft, 0.95),
        "mean_accepted_len": _tau(results.values()),
    }


def _tau(results) -> float | None:
    cycles = [c for r in results for c in r.cycles]
    return sum(c.emitted for c in cycles) / len(cycles) if cycles else None


def _requests(cfg: StreamConfig, processor, vlm: SplitVLM, max_new: int, count: int, ignore_eos: bool = False
              ) -> list[Request]:
    inputs = benchmark_inputs(processor, vlm.family, count, cfg.task)
    keep = ("pixel_values", "input_ids", "image_grid_thw", "image_sizes")
    return [Request({k: v for k, v in x.items() if k in keep}, max_new, ignore_eos=ignore_eos) for x in inputs]


def _methods(cfg: StreamConfig, vlm: SplitVLM, n: int, imitation, max_rows: int, max_slots: int
             ) -> dict[str, Callable[[], ContinuousEngine]]:
    cost = measure_cost_model(vlm.decoder, n, imitation)[0] if "adaptive" in cfg.drafts else None

    def engine(drafter, draft=1):
        return lambda: ContinuousEngine(vlm, drafter, draft, cost, max_rows=max_rows, max_slots=max_slots)

    methods = {"plain": engine(None)}
    for d in cfg.drafts:
        if d == "lookup":
            methods["prompt lookup d=6"] = engine(PromptLookupDrafter(vlm.decoder), 6)
        else:
            methods[f"ssd d={d}"] = engine(ShallowDrafter(vlm.decoder, n, imitation, vlm.eos_token_id), d)
    return methods


def _load(cfg: StreamConfig) -> tuple[SplitVLM, object, int, object]:
    set_threads(cfg.threads)
    vlm = load_backbone(cfg.backbone)
    imitation = load_imitation(cfg.imitation, vlm, cfg.backbone)
    L = vlm.decoder.num_layers
    n = cfg.n if cfg.n is not None else getattr(imitation, "n", None) or max(1, L // 4)
    if not 1 <= n <= L - 1:
        raise UsageError(f"--n {n}: the draft exit layer must be in [1, {L - 1}] for --backbone {cfg.backbone}")
    if cfg.redundant_deep_layers:
        make_redundant(vlm, n)
    return vlm, load_processor(cfg.backbone), n, imitation


def stream_benchmark(cfg: StreamConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """The stream benchmark at each `max_rows`, then the length sweep; one JSON-able report."""
    vlm, processor, n, imitation = _load(cfg)
    requests = _requests(cfg, processor, vlm, cfg.max_new_tokens, cfg.num_requests)
    slots = max(int(r.inputs["input_ids"].shape[1]) for r in requests) + cfg.max_new_tokens + 32
    report: dict = {"config": asdict(cfg), "n": n, "L": vlm.decoder.num_layers, "torch_threads":
                    torch.get_num_threads(), "streams": [], "lengths": []}
    for max_rows in cfg.max_rows if cfg.num_requests else []:
        methods = _methods(cfg, vlm, n, imitation, max_rows, slots)
        rate = cfg.rate
        if cfg.load is not None:
            probe = run_stream(methods["plain"](), requests, 0.0)
            rate = cfg.load * len(requests) / probe["makespan_s"]
            log(f"stream: plain serves {len(requests) / probe['makespan_s']:.2f} req/s at {max_rows} rows; "
                f"arrivals at {rate:.2f} req/s (load {cfg.load})")
        runs: dict[str, list[dict]] = {name: [] for name in methods}
        for r in range(cfg.repeats):
            for name, make in methods.items():
                runs[name].append(run_stream(make(), requests, rate))
                log(f"  rows {max_rows} repeat {r + 1}/{cfg.repeats} {name:18s} "
                    f"{runs[name][-1]['tokens_per_s']:.1f} tok/s")
        plain = runs["plain"][0]["tokens"]
        for name, reps in runs.items():
            row = {key: statistics.median(x[key] for x in reps) for key in reps[0]
                   if key not in ("tokens", "mean_accepted_len")}
            row.update(method=name, max_rows=max_rows, rate=rate, mean_accepted_len=reps[0]["mean_accepted_len"],
                       tokens_identical=all(x["tokens"] == plain for x in reps))
            report["streams"].append(row)
    for length in cfg.lengths:
        report["lengths"].append(_length_row(cfg, vlm, processor, n, imitation, length, log))
    return report


def _length_row(cfg: StreamConfig, vlm: SplitVLM, processor, n: int, imitation, length: int, log) -> dict:
    """Per-token decode time of one request of `length` new tokens (EOS ignored), per method, median of repeats."""
    request = _requests(cfg, processor, vlm, length, 1, ignore_eos=True)[0]
    slots = int(request.inputs["input_ids"].shape[1]) + length + 32
    methods = _methods(cfg, vlm, n, imitation, 1, slots)
    # the batch engine of generate() (DynamicCache), with no EOS: the sweep runs every request to its budget
    batch = {"plain generate()": GreedyDecoder(vlm.decoder, ())}
    d = next((d for d in cfg.drafts if d.isdigit() or d == "dynamic"), None)
    if d is not None:
        batch[f"ssd d={d} generate()"] = SelfSpeculativeDecoder(vlm.decoder, n, imitation, d, ())
    per_token: dict[str, list[float]] = {name: [] for name in [*methods, *batch]}
    for _ in range(cfg.repeats):
        for name, make in methods.items():
            result = make().run([request])[0]
            per_token[name].append(result.decode_time_s / (len(result.tokens) - 1))
        for name, decoder in batch.items():
            out = generate(vlm, decoder, **request.inputs, max_new_tokens=length).sequences[0]
            per_token[name].append(out.decode_time_s / (len(out.tokens) - 1))
    row = {"max_new_tokens": length, **{f"{k} ms/token": 1e3 * statistics.median(v) for k, v in per_token.items()}}
    log(f"  length {length}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k.endswith("ms/token")))
    return row


def format_stream(report: dict) -> str:
    """The stream and length tables, with each SSD row's ratios to plain decoding at the same max_rows."""
    lines = ["| max rows | method | tok/s | x plain | p50 latency s | p95 latency s | p50 TTFT s | tau | identical |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in report["streams"]:
        plain = next(r for r in report["streams"] if r["max_rows"] == row["max_rows"] and r["method"] == "plain")
        tau = "" if row["mean_accepted_len"] is None else f"{row['mean_accepted_len']:.2f}"
        lines.append(f"| {row['max_rows']} | {row['method']} | {row['tokens_per_s']:.1f} | "
                     f"{row['tokens_per_s'] / plain['tokens_per_s']:.2f}x | {row['p50_latency_s']:.3f} | "
                     f"{row['p95_latency_s']:.3f} | {row['p50_ttft_s']:.3f} | {tau} | {row['tokens_identical']} |")
    if report["lengths"]:
        keys = [k for k in report["lengths"][0] if k.endswith("ms/token")]
        lines += ["", "| max new tokens | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for row in report["lengths"]:
            lines.append(f"| {row['max_new_tokens']} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)
