r"""`python -m lightning_ssd bench-serve`: concurrent streaming clients against the server, SSD against `--mode
greedy`, at each concurrency; tokens/s, latency, time to first token, failures and the servers' memory.

    python -m lightning_ssd bench-serve --backbone runs/demo/finetune/backbone --draft-head runs/demo/draft \
        --concurrency 1 --concurrency 4 --concurrency 16 --num-requests 48
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightning_ssd.bench.serve_load import ServeBenchConfig, format_serve, serve_benchmark
from lightning_ssd.errors import ToolParser
from lightning_ssd.files import atomic_write_text
from lightning_ssd.tools import checks


def _parser() -> argparse.ArgumentParser:
    d = ServeBenchConfig()
    p = ToolParser(prog="python -m lightning_ssd bench-serve", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=d.backbone, help="preset name or checkpoint folder")
    p.add_argument("--draft-head", default=None, help="imitation checkpoint or draft folder for the SSD server")
    p.add_argument("--n", type=int, default=None, help="without --draft-head: the early-exit layer (default L // 4)")
    p.add_argument("--draft", default=d.draft, help="the SSD server's --draft: d, 'dynamic' or 'adaptive'")
    p.add_argument("--redundant-deep-layers", action="store_true",
                   help="serve a copy whose layers n..L write nothing (alpha = 1 by construction): an upper bound")
    p.add_argument("--num-requests", type=int, default=d.num_requests, help="requests per concurrency level")
    p.add_argument("--concurrency", type=int, action="append", help="concurrent clients; repeatable (default 1 4 16)")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="each request's max_tokens")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="the servers' live rows")
    p.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens,
                   help="the servers' --max-prompt-tokens (sizes their preallocated key/value cache)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads in each server")
    p.add_argument("--workers", type=int, default=d.workers, help="inference workers per server")
    p.add_argument("--warmup", type=int, default=d.warmup, help="requests before measuring")
    p.add_argument("--output", default="bench_serve.json", help="JSON report path")
    return p


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = vars(parser.parse_args(argv))
    args.pop("verbose")
    output = Path(args.pop("output"))
    checks.output_file(str(output))
    args["concurrency"] = args["concurrency"] or ServeBenchConfig().concurrency
    if args["num_requests"] < 1 or min(args["concurrency"]) < 1 or args["max_tokens"] < 1:
        parser.error("--num-requests, --concurrency and --max-tokens must be >= 1")
    if args["draft_head"] and (args["n"] is not None or args["redundant_deep_layers"]):
        parser.error("--draft-head carries its own n: drop --n and --redundant-deep-layers")
    report = serve_benchmark(ServeBenchConfig(**args))
    atomic_write_text(output, json.dumps(report, indent=2))
    print(format_serve(report))
    print(f"\nwrote {output}")
