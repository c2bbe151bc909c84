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

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.bench.inputs import benchmark_inputs
from lightning_ssd.bench.runner import bench_spec, make_redundant
from lightning_ssd.decoding.continuous import ContinuousEngine, Request, warm_up_count
from lightning_ssd.decoding.cost import CostModel, measure_cost_model
from lightning_ssd.decoding.drafters import ShallowDrafter
from lightning_ssd.decoding.engine import GreedyDecoder, SelfSpeculativeDecoder
from lightning_ssd.decoding.generate import generate
from lightning_ssd.decoding.prompt_lookup import PromptLookupDrafter
from lightning_ssd.decoding.spec import DraftSpec
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
        prefill_batch: the engines' `prefill_batch` (every method alike): rows that must be free before waiting
            requests are admitted while others decode.
        rate: arrivals per second (0: all at once); load: instead, this fraction of the plain engine's throughput.
        max_new_tokens: each request's budget.
        lengths: max_new_tokens of the length sweep (EOS ignored); empty: no sweep.
        repeats: runs per figure (medians reported), after an untimed warm-up of each method.
        compile: also run every method with `torch.compile`d layer ranges, side by side (its warm-up, which
            compiles, is reported as `warmup_s`).
        profile: profile one request of each method alone (torch.profiler): where the decode time goes.
        task: "caption" or "long" (the detailed-description prompt).
        threads: torch CPU threads (None: the default rule of `lightning_ssd.threads`).
        device: where to run ("cpu", "cuda", ...); dtype: the model's dtype by name ("float32", "bfloat16").
    """

    backbone: str = "small-llava"
    imitation: str = "identity"
    n: int | None = None
    drafts: list[str] = field(default_factory=lambda: ["6"])
    redundant_deep_layers: bool = False
    num_requests: int = 64
    max_rows: list[int] = field(default_factory=lambda: [8])
    prefill_batch: int = 1
    rate: float = 0.0
    load: float | None = None
    max_new_tokens: int = 32
    lengths: list[int] = field(default_factory=list)
    repeats: int = 3
    task: str = "caption"
    threads: int | None = None
    compile: bool = False
    profile: bool = False
    device: str = "cpu"
    dtype: str = "float32"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_stream(engine: ContinuousEngine, requests: list[Request], rate: float, cost=None) -> dict:
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
        "decode_tokens_per_s": _decode_rate(results.values()),
        "p50_latency_s": _percentile(latency, 0.5),
        "p95_latency_s": _percentile(latency, 0.95),
        "p50_ttft_s": _percentile(ttft, 0.5),
        "p95_ttft_s": _percentile(ttft, 0.95),
        "mean_accepted_len": _tau(results.values()),
        # the engine's busy time spent prefilling admitted requests (vision encoder + prompt) rather than decoding
        "prefill_share": _prefill_share(results.values()),
        **dict(zip(("alpha", "predicted_speedup"), _predicted(results.values(), cost), strict=True)),
        **_seconds_per_token(results.values(), cost),
    }


def _decode_rate(results) -> float:
    """Tokens per second of the engine's decoding steps alone: a request's first token comes from its prefill, the
    rest from the cycles (or plain steps) whose seconds the engine shares out among the rows they ran."""
    return sum(len(r.tokens) - 1 for r in results) / max(1e-12, sum(r.decode_time_s for r in results))


def _prefill_share(results) -> float:
    prefill = sum(r.prefill_time_s for r in results)
    return prefill / max(1e-12, prefill + sum(r.decode_time_s for r in results))


def _seconds_per_token(results, cost) -> dict[str, float]:
    """Seconds of drafting and of verification (with acceptance and bookkeeping) per token the cycles emitted, and
    what the cost model charges for the same cycles, in layer-equivalents per token: the parts that
    `fraction_of_predicted` lumps together. A plain step counts as verification."""
    cycles = [c for r in results for c in r.cycles]
    tokens = max(1, sum(c.emitted for c in cycles))
    out = {"draft_s_per_token": sum(c.draft_time_s for c in cycles) / tokens,
           "verify_s_per_token": sum(c.verify_time_s for c in cycles) / tokens}
    if cost is not None and any(c.drafted for c in cycles):
        out |= {"draft_model_per_token": sum(cost.draft_cost(c.drafted) for c in cycles) / tokens,
                "verify_model_per_token": len(cycles) * cost.verify_cost / tokens}
    return out


def _tau(results) -> float | None:
    cycles = [c for r in results for c in r.cycles]
    return sum(c.emitted for c in cycles) / len(cycles) if cycles else None


def _predicted(results, cost) -> tuple[float | None, float | None]:
    """alpha over the judged drafts, and the cost model's speedup for the drafts the cycles made (None: no draft;
    no cost model)."""
    cycles = [c for r in results for c in r.cycles if c.drafted]
    if not cycles:
        return None, None
    alpha = sum(c.accepted for c in cycles) / sum(min(c.accepted + 1, c.drafted) for c in cycles)
    return alpha, cost.predicted_speedup(alpha, [c.drafted for c in cycles]) if cost is not None else None


def _requests(cfg: StreamConfig, processor, vlm: SplitVLM, max_new: int, count: int, ignore_eos: bool = False
              ) -> list[Request]:
    inputs = benchmark_inputs(processor, vlm.family, count, cfg.task)
    keep = ("pixel_values", "input_ids", "image_grid_thw", "image_sizes")
    dtype = next(vlm.parameters()).dtype
    return [Request({k: v.to(dtype) if k == "pixel_values" else v for k, v in x.items() if k in keep}, max_new,
                    ignore_eos=ignore_eos) for x in inputs]


def _methods(cfg: StreamConfig, vlm: SplitVLM, spec: DraftSpec, cost: CostModel, max_rows: int, max_slots: int
             ) -> dict[str, Callable[[], ContinuousEngine]]:
    def engine(drafter, draft=1, compile=False):
        return lambda: ContinuousEngine(vlm, drafter, draft, cost, max_rows=max_rows, max_slots=max_slots,
                                        compile=compile, prefill_batch=min(cfg.prefill_batch, max_rows))

    drafters = {"plain": (None, 1)}
    for d in cfg.drafts:
        if d == "lookup":
            drafters["prompt lookup d=6"] = (PromptLookupDrafter(vlm.decoder), 6)
        else:
            drafters[f"ssd d={d}"] = (ShallowDrafter(vlm.decoder, replace(spec, draft=d), vlm.eos_token_id), d)
    methods = {name: engine(*args) for name, args in drafters.items()}
    if cfg.compile:
        methods |= {f"{name} compiled": engine(*args, compile=True) for name, args in drafters.items()}
    return methods


def _warm_up(methods: dict, requests: list[Request], max_rows: int) -> dict[str, float]:
    """An untimed `ContinuousEngine.warm_up` of each method, on the stream's first requests (again from the first if
    there are too few); the seconds each took (compiling, for compiled ones)."""
    first = [requests[i % len(requests)] for i in range(warm_up_count(max_rows))]
    return {name: make().warm_up(first) for name, make in methods.items()}


def _load(cfg: StreamConfig) -> tuple[SplitVLM, object, DraftSpec]:
    set_threads(cfg.threads)
    dtype = getattr(torch, cfg.dtype)
    vlm = load_backbone(cfg.backbone, dtype=dtype).to(cfg.device)
    spec = bench_spec(cfg.imitation, cfg.n, vlm, cfg.backbone)
    if spec.imitation is not None:
        spec = replace(spec, imitation=spec.imitation.to(device=cfg.device, dtype=dtype))
    if cfg.redundant_deep_layers:
        make_redundant(vlm, spec.n)
    return vlm, load_processor(cfg.backbone), spec


def stream_benchmark(cfg: StreamConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """The stream benchmark at each `max_rows`, then the length sweep; one JSON-able report."""
    vlm, processor, spec = _load(cfg)
    requests = _requests(cfg, processor, vlm, cfg.max_new_tokens, cfg.num_requests)
    slots = max((int(r.inputs["input_ids"].shape[1]) for r in requests), default=0) + cfg.max_new_tokens + 32
    cost = measure_cost_model(vlm.decoder, spec.n, spec.imitation)[0]
    report: dict = {"config": asdict(cfg), "n": spec.n, "L": vlm.decoder.num_layers, "torch_threads":
                    torch.get_num_threads(), "cost_model": asdict(cost), "streams": [], "lengths": []}
    for max_rows in cfg.max_rows if cfg.num_requests else []:
        methods = _methods(cfg, vlm, spec, cost, max_rows, slots)
        rate = cfg.rate
        if cfg.load is not None:
            probe = run_stream(methods["plain"](), requests, 0.0)
            rate = cfg.load * len(requests) / probe["makespan_s"]
            log(f"stream: plain serves {len(requests) / probe['makespan_s']:.2f} req/s at {max_rows} rows; "
                f"arrivals at {rate:.2f} req/s (load {cfg.load})")
        warmup = _warm_up(methods, requests, max_rows)
        runs: dict[str, list[dict]] = {name: [] for name in methods}
        for r in range(cfg.repeats):
            for name, make in methods.items():
                # the cost model is SSD's (n shallow layers, imitation, head): it predicts nothing of prompt lookup
                runs[name].append(run_stream(make(), requests, rate, cost if name.startswith("ssd") else None))
                log(f"  rows {max_rows} repeat {r + 1}/{cfg.repeats} {name:18s} "
                    f"{runs[name][-1]['tokens_per_s']:.1f} tok/s")
        plain = runs["plain"][0]["tokens"]
        for name, reps in runs.items():
            row = {key: statistics.median(x[key] for x in reps) for key in reps[0]
                   if key not in ("tokens", "mean_accepted_len", "alpha", "predicted_speedup")}
            row.update(alpha=reps[0]["alpha"], predicted_speedup=reps[0]["predicted_speedup"])
            row.update(method=name, max_rows=max_rows, rate=rate, warmup_s=warmup[name],
                       mean_accepted_len=reps[0]["mean_accepted_len"],
                       tokens_identical=all(x["tokens"] == plain for x in reps))
            row.update(_ratios(reps, runs[_baseline_name(name)]))
            if row["predicted_speedup"]:
                row["fraction_of_predicted"] = row["x_plain_decode"] / row["predicted_speedup"]
                row["cost_per_token"] = _cost_split(reps, runs[_baseline_name(name)], cost)
            report["streams"].append(row)
    for length in cfg.lengths:
        report["lengths"].append(_length_row(cfg, vlm, processor, spec, cost, length, log))
    if cfg.profile:
        report["profile"] = {name: profile_request(make, requests[0])
                             for name, make in _methods(cfg, vlm, spec, cost, 1, slots).items()}
    return report


# aten ops grouped by what they do in a decoding step
_OP_GROUPS = {"linear (weights)": ("addmm", "mm", "linear", "matmul", "bmm"),
              "attention": ("scaled_dot_product", "_scaled_dot_product", "softmax", "_softmax"),
              "cache writes and reads": ("index_put", "index", "slice", "select", "copy_", "narrow")}


def profile_request(make: Callable[[], ContinuousEngine], request: Request) -> dict[str, float]:
    """Milliseconds per generated token of one request alone, by group of torch ops; `outside torch ops` is the
    rest of the wall time (Python, the engine's bookkeeping, the framework's dispatch)."""
    make().run([request])  # warm-up
    engine = make()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        result = engine.run([request])[0]
        wall = time.perf_counter() - start
    groups = dict.fromkeys([*_OP_GROUPS, "other ops"], 0.0)
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        name = event.key.removeprefix("aten::")
        group = next((g for g, keys in _OP_GROUPS.items() if name in keys or name.startswith(keys)), "other ops")
        groups[group] += event.self_cpu_time_total / 1e6
    groups["outside torch ops"] = max(0.0, wall - sum(groups.values()))
    return {k: 1e3 * v / len(result.tokens) for k, v in groups.items()}


def _length_row(cfg: StreamConfig, vlm: SplitVLM, processor, spec: DraftSpec, cost: CostModel, length: int,
                log) -> dict:
    """Per-token decode time of one request of `length` new tokens (EOS ignored), per method, median of repeats."""
    request = _requests(cfg, processor, vlm, length, 1, ignore_eos=True)[0]
    slots = int(request.inputs["input_ids"].shape[1]) + length + 32
    methods = _methods(cfg, vlm, spec, cost, 1, slots)
    # the batch engine of generate() (DynamicCache), with no EOS: the sweep runs every request to its budget
    batch = {"plain generate()": GreedyDecoder(vlm.decoder, ())}
    d = next((d for d in cfg.drafts if d not in ("adaptive", "lookup")), None)  # those need the stream engine
    if d is not None:
        batch[f"ssd d={d} generate()"] = SelfSpeculativeDecoder(vlm.decoder, replace(spec, draft=d), ())
    for make in methods.values():  # one row, a cache allocated as it goes: the request itself covers every shape
        make().run([request])
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


def _baseline_name(method: str) -> str:
    """The plain decoding a method is compared with: compiled if the method is (so that a compiled method's ratio
    is SSD's, not the compiler's)."""
    return "plain compiled" if method.endswith(" compiled") else "plain"


def _ratios(runs: list[dict], baseline: list[dict]) -> dict:
    """Throughput over the baseline's, repeat by repeat (the two ran one after the other, so a spell of a slower
    machine weighs on both): the median and the range over the repeats, for the whole stream (`x_plain`: prefill
    included, what a server delivers) and for its decoding steps alone (`x_plain_decode`: what the cost model
    predicts, since SSD does not change prefill)."""
    out = {}
    for key, name in (("tokens_per_s", "x_plain"), ("decode_tokens_per_s", "x_plain_decode")):
        # nan where the baseline has none: every request ended with the token of its prefill, nothing was decoded
        ratios = [run[key] / base[key] if base[key] else math.nan for run, base in zip(runs, baseline, strict=True)]
        out |= {name: statistics.median(ratios), f"{name}_range": [min(ratios), max(ratios)]}
    return out


def _cost_split(runs: list[dict], baseline: list[dict], cost: CostModel) -> dict[str, float]:
    """Where a decoding token's time goes, in units of a plain decoding token's (the baseline's seconds per decoded
    token, repeat by repeat; medians): drafting and verification as measured, beside the cost model's charge for
    the same cycles. In each repeat, measured draft + verify = 1 / the repeat's decoding ratio, and the model's two =
    1 / its speedup at the tokens the cycles really emitted."""
    plain = [1.0 / base["decode_tokens_per_s"] for base in baseline]
    return {
        "draft": statistics.median(r["draft_s_per_token"] / p for r, p in zip(runs, plain, strict=True)),
        "verify": statistics.median(r["verify_s_per_token"] / p for r, p in zip(runs, plain, strict=True)),
        "draft_model": statistics.median(r["draft_model_per_token"] for r in runs) / cost.plain_cost,
        "verify_model": statistics.median(r["verify_model_per_token"] for r in runs) / cost.plain_cost,
    }


def format_stream(report: dict) -> str:
    """The stream and length tables, with each SSD row's ratio to plain decoding at the same max_rows (compiled
    rows to compiled plain decoding), over the whole stream and over its decoding steps alone: the median over
    repeats of each repeat's ratio, and their range."""
    lines = ["| max rows | method | tok/s | x plain | x plain, decoding | p50 latency s | p95 latency s | p50 TTFT s "
             "| tau | alpha | predicted | of predicted | prefill share | identical |", "|" + "---|" * 14]
    for row in report["streams"]:
        low, high = row["x_plain_range"]
        decode_low, decode_high = row["x_plain_decode_range"]
        tau, alpha, predicted, fraction = (
            "" if row.get(k) is None else f"{row[k]:.2f}"
            for k in ("mean_accepted_len", "alpha", "predicted_speedup", "fraction_of_predicted"))
        lines.append(f"| {row['max_rows']} | {row['method']} | {row['tokens_per_s']:.1f} | "
                     f"{row['x_plain']:.2f}x [{low:.2f}-{high:.2f}] | "
                     f"{row['x_plain_decode']:.2f}x [{decode_low:.2f}-{decode_high:.2f}] | "
                     f"{row['p50_latency_s']:.3f} | {row['p95_latency_s']:.3f} | {row['p50_ttft_s']:.3f} | "
                     f"{tau} | {alpha} | {predicted} | {fraction} | {row['prefill_share']:.2f} | "
                     f"{row['tokens_identical']} |")
    split = [row for row in report["streams"] if row.get("cost_per_token")]
    if split:
        lines += ["", "A decoded token's time in plain decoding tokens (measured, and the cost model's charge for the "
                  "same cycles):", "", "| max rows | method | draft | draft, model | verify | verify, model |",
                  "|" + "---|" * 6]
        for row in split:
            c = row["cost_per_token"]
            lines.append(f"| {row['max_rows']} | {row['method']} | {c['draft']:.3f} | {c['draft_model']:.3f} | "
                         f"{c['verify']:.3f} | {c['verify_model']:.3f} |")
    for name, groups in report.get("profile", {}).items():
        lines += ["", f"profile, {name}, one request alone (ms per token): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in groups.items())]
    if report["lengths"]:
        keys = [k for k in report["lengths"][0] if k.endswith("ms/token")]
        lines += ["", "| max new tokens | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for row in report["lengths"]:
            lines.append(f"| {row['max_new_tokens']} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)
