"""`python -m lightning_ssd bench-stream`: a request stream through the continuous-batching engine, plain decoding
against SSD, and per-token cost against output length; JSON and tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightning_ssd.bench.stream import StreamConfig, format_stream, stream_benchmark
from lightning_ssd.decoding.checks import check_exit_layer
from lightning_ssd.errors import ToolParser, UsageError, at_least
from lightning_ssd.files import atomic_write_text
from lightning_ssd.threads import add_threads_argument
from lightning_ssd.tools import checks

_DRAFT_NAMES = ("dynamic", "adaptive", "lookup")


def _parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="python -m lightning_ssd bench-stream", description=__doc__)
    d = StreamConfig()
    p.add_argument("--backbone", default=d.backbone, help="preset name or local checkpoint folder")
    p.add_argument("--imitation", default=d.imitation, help="'none', 'identity' or an imitation checkpoint")
    p.add_argument("--n", type=at_least(1), default=None,
                   help="draft exit layer (default: the checkpoint's, else L // 4)")
    p.add_argument("--draft", dest="drafts", action="append",
                   help="SSD draft length: d, 'dynamic', 'adaptive' (from the rows' acceptance and the "
                        "cycles' measured cost), or 'lookup' (prompt lookup); repeatable")
    p.add_argument("--redundant-deep-layers", action="store_true",
                   help="zero the residual writes of layers n..L so that acceptance is 1 by construction")
    p.add_argument("--num-requests", type=at_least(0), default=d.num_requests,
                   help="requests in the stream (0: only the length sweep)")
    p.add_argument("--max-rows", type=at_least(1), action="append",
                   help="live rows at most; repeatable (each on its own)")
    p.add_argument("--prefill-batch", type=at_least(1), default=d.prefill_batch,
                   help="while rows decode, admit waiting requests only once this many rows are free, so that they "
                        "are prefilled in one pass (every method alike; 1: as soon as one row frees)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, default=d.rate, help="arrivals per second (0: all at once)")
    rate.add_argument("--load", type=float, default=None,
                      help="arrivals at this fraction of plain decoding's measured request throughput, e.g. 0.7")
    p.add_argument("--max-new-tokens", type=at_least(2), default=d.max_new_tokens, help="each request's token budget")
    p.add_argument("--length", dest="lengths", type=at_least(2), action="append", default=[],
                   help="also run the length sweep at this many new tokens, EOS ignored; repeatable")
    p.add_argument("--num-repeats", dest="repeats", type=at_least(1), default=d.repeats,
                   help="runs per figure (medians)")
    p.add_argument("--task", choices=["caption", "long"], default=d.task)
    p.add_argument("--compile", action="store_true",
                   help="also run every method with torch.compile'd layer ranges, side by side")
    p.add_argument("--profile", action="store_true",
                   help="profile one request of each method alone: milliseconds per token by group of torch ops")
    p.add_argument("--device", default=d.device, help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16"], help="the model's dtype")
    add_threads_argument(p)
    p.add_argument("--output", default="bench_stream.json", help="JSON report path")
    return p


def _check(args: dict) -> None:
    """Every flag that can be checked before a model loads."""
    if args["rate"] < 0:
        raise UsageError(f"--rate {args['rate']:g}: must be >= 0 (0: every request arrives at once)")
    if args["load"] is not None and not 0 < args["load"] <= 1:
        raise UsageError(f"--load {args['load']:g}: must be in (0, 1], a fraction of plain decoding's throughput")
    if not args["num_requests"] and not args["lengths"]:
        raise UsageError("--num-requests 0 runs no stream: give --length for the length sweep")
    if not args["num_requests"] and args["profile"]:
        raise UsageError("--profile profiles the stream's first request: give --num-requests >= 1")
    for d in args["drafts"]:
        checks.draft_length(d, "--draft", _DRAFT_NAMES)
    num_layers = checks.backbone(args["backbone"])
    if args["n"] is not None:
        check_exit_layer(args["n"], num_layers, "--n")
    if args["imitation"] not in ("none", "identity"):
        checks.draft_source(args["imitation"], "--imitation")
    checks.device(args["device"])


def main(argv: list[str] | None = None) -> None:
    args = vars(_parser().parse_args(argv))
    args.pop("verbose")
    output = Path(args.pop("output"))
    args["drafts"] = args["drafts"] or StreamConfig().drafts
    args["max_rows"] = args["max_rows"] or StreamConfig().max_rows
    checks.output_file(str(output))
    _check(args)
    report = stream_benchmark(StreamConfig(**args))
    atomic_write_text(output, json.dumps(report, indent=2))
    print(format_stream(report))
    print(f"\nwrote {output}")
