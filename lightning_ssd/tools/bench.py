"""`python -m lightning_ssd bench`: decoding speed of every method on one model, written as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightning_ssd.bench.runner import BenchConfig, format_table, run_benchmark
from lightning_ssd.decoding.checks import check_confidence_threshold, check_exit_layer
from lightning_ssd.errors import ToolParser, at_least
from lightning_ssd.files import atomic_write_text
from lightning_ssd.threads import add_threads_argument
from lightning_ssd.tools import checks


def _parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="python -m lightning_ssd bench", description=__doc__)
    d = BenchConfig()
    p.add_argument("--backbone", default=d.backbone, help="preset name or local checkpoint folder")
    p.add_argument("--n", type=at_least(1), default=None, help="draft exit layer (default L // 4)")
    p.add_argument("--draft", dest="drafts", action="append", help="SSD draft length d, or 'dynamic'; repeatable")
    p.add_argument("--confidence-threshold", dest="confidence_thresholds", action="append", type=_threshold,
                   help="stop drafting below this top-1 probability, or 'none'; repeatable (each d runs with each)")
    p.add_argument("--imitation", default=d.imitation, help="'none', 'identity' or an imitation checkpoint")
    p.add_argument("--redundant-deep-layers", action="store_true",
                   help="zero the residual writes of layers n..L so that acceptance is 1 by construction")
    p.add_argument("--num-samples", type=at_least(1), default=d.num_samples, help="test images decoded per repeat")
    p.add_argument("--batch-size", dest="batch_sizes", action="append", type=at_least(1),
                   help="decode the images in batches of this size; repeatable (each size is benchmarked on its own)")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature (> 0)")
    p.add_argument("--top-k", type=int, default=d.top_k, help="sample among the k most likely tokens (0: off)")
    p.add_argument("--top-p", type=float, default=d.top_p, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=d.seed, help="sampling seed (and the skip-set search's)")
    p.add_argument("--skip-layers", type=_layers, default=None,
                   help="run the Draft & Verify baseline with this skip set, e.g. 3,5,7")
    p.add_argument("--skip-search-trials", type=at_least(0), default=d.skip_search_trials,
                   help="without --skip-layers: find Draft & Verify's skip set by this many TPE trials (0: no D&V)")
    p.add_argument("--skip-search-samples", type=at_least(1), default=d.skip_search_samples,
                   help="validation images the skip-set search decodes")
    p.add_argument("--dv-threshold", type=float, default=d.dv_threshold,
                   help="Draft & Verify's starting draft-exiting threshold (adapted as the original does)")
    p.add_argument("--max-new-tokens", type=at_least(2), default=d.max_new_tokens)
    p.add_argument("--repeats", type=at_least(1), default=d.repeats)
    p.add_argument("--warmup", type=at_least(0), default=d.warmup)
    p.add_argument("--task", choices=["caption", "long"], default=d.task)
    p.add_argument("--device", default=d.device)
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16"])
    add_threads_argument(p)
    p.add_argument("--output", default="bench.json", help="JSON report path")
    return p


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2))


def _layers(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated layer indices, got {value!r}") from None


def _threshold(value: str) -> float | None:
    if value == "none":
        return None
    try:
        threshold = float(value)
        check_confidence_threshold(threshold)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1] or 'none', got {value!r}") from None
    return threshold


def _check(args: dict) -> None:
    """Every flag that can be checked before a model loads."""
    num_layers = checks.backbone(args["backbone"])
    if args["n"] is not None:
        check_exit_layer(args["n"], num_layers, "--n")
    if args["imitation"] not in ("none", "identity"):
        checks.draft_source(args["imitation"], "--imitation")
    for d in args["drafts"]:
        checks.draft_length(d)
    checks.sampling(args["do_sample"], args["temperature"], args["top_k"], args["top_p"])
    checks.device(args["device"])


def main(argv: list[str] | None = None) -> None:
    args = vars(_parser().parse_args(argv))
    args.pop("verbose")
    output = Path(args.pop("output"))
    args["drafts"] = args["drafts"] or BenchConfig().drafts
    args["confidence_thresholds"] = args["confidence_thresholds"] or BenchConfig().confidence_thresholds
    args["batch_sizes"] = args["batch_sizes"] or BenchConfig().batch_sizes
    checks.output_file(str(output))
    _check(args)
    report = run_benchmark(BenchConfig(**args))
    _write_json(output, report)
    print(format_table(report))
    print(f"\nwrote {output}")
