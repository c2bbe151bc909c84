"""`python -m lightning_ssd demo`: the embedded default end to end, on this machine, offline.

  1. fine-tune a random-initialised LLaVA preset (Llama decoder, L = 24) on the embedded synthetic captions
     (eq. 1), choosing the draft exit layer n on the validation split as it goes (appendix A.4);
  2. train the imitation network on the frozen backbone (eqs. 2-4);
  3. test: decode the test split with the full model, the draft without and with imitation, and SSD;
  4. benchmark the trained model: SSD against the faster of transformers' greedy generate and the plain greedy loop.

Writes everything under --root and prints one results table (also saved as results.md and results.json).

The table's speedup column is what a user of one image waits for: the benchmark's decode latency at batch 1,
against the faster greedy baseline (warm-up, median of --bench-repeats). The test stage's speedup, measured on its
batches of many images, is throughput, which a larger batch erodes: it has a column of its own. `render` writes the
table from results.json alone.

To keep the whole run within minutes, the training stages validate once, after their last epoch, with the decoder
that stage is about (fine-tune: the full model; imitation: the draft with imitation), and the sweep over d runs
once, in the test stage, which decodes the test split with every method. --full-validation validates as the stage
configs do.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import yaml

from lightning_ssd.configs import EXPERIMENTS, callbacks_without_sweep
from lightning_ssd.errors import ToolParser, UsageError, at_least
from lightning_ssd.files import atomic_write_text
from lightning_ssd.threads import add_threads_argument, set_threads, threads_args
from lightning_ssd.timing import FLAG, SLACK, marked
from lightning_ssd.tools import checks


def _parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="python -m lightning_ssd demo", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/demo", help="output folder (checkpoints, logs, results)")
    p.add_argument("--backbone", default="base-llava", help="preset to fine-tune from random init")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the backbone's random init and of every stage (the benchmark's images stay the same)")
    p.add_argument("--finetune-epochs", type=at_least(1), default=2)
    p.add_argument("--imitation-epochs", type=at_least(1), default=12)
    p.add_argument("--num-train", type=at_least(1), default=2000, help="training images (5 captions each)")
    p.add_argument("--num-test", type=at_least(1), default=200, help="test images decoded by every method")
    p.add_argument("--draft", default="6", help="SSD draft length d for the test stage: an integer or 'dynamic'")
    p.add_argument("--bench-samples", type=at_least(1), default=24, help="test images in the speed benchmark")
    p.add_argument("--bench-repeats", type=at_least(1), default=3)
    p.add_argument("--full-validation", action="store_true",
                   help="validate as the stage configs do: after each epoch, with every decoder, and sweep d at the "
                        "end of imitation training")
    p.add_argument("--quick", action="store_true", help="a minutes-long smoke run on a tiny preset (tests)")
    add_threads_argument(p)
    return p


def _stage(args: list[str]):
    from lightning_ssd.cli import cli_main

    return cli_main([*args, *threads_args()])  # the stages keep the count this command chose


def _metrics(cli, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith(prefix)}


def _data_overrides(a: argparse.Namespace) -> list[str]:
    return ["--data.init_args.num_train", str(a.num_train), "--data.init_args.num_test", str(a.num_test)]


def _val_overrides(a: argparse.Namespace, epochs: int, mode: str) -> list[str]:
    """Validation after the last epoch only, decoding with `mode` only (nothing changes with --full-validation)."""
    if a.full_validation:
        return []
    return ["--trainer.check_val_every_n_epoch", str(epochs), "--model.init_args.eval_modes", f"[{mode}]"]


def _callbacks_without_fit_sweep(root: Path) -> list[str]:
    """A config fragment with the imitation stage's callbacks less the sweep over d (the test stage sweeps)."""
    return ["--config", str(callbacks_without_sweep("imitation.yaml", root / "imitation_callbacks.yaml"))]


def _trivial_baseline(num_train: int, num_test: int) -> dict[str, float]:
    """Scores of an image-blind captioner: the most frequent training caption, for every test image."""
    from lightning_ssd.data.synth.benchmark import SyntheticConfig, generate_item
    from lightning_ssd.metrics import CaptionScores

    config = SyntheticConfig(num_train=num_train, num_test=num_test)
    counts = Counter(c for i in range(num_train) for c in generate_item(config, "train", i).captions)
    caption = counts.most_common(1)[0][0]
    refs = [list(generate_item(config, "test", i).captions) for i in range(num_test)]
    metric = CaptionScores(meteor=False, spice=False)
    metric.update([caption] * num_test, refs)
    return {"caption": caption, **{k: float(v) for k, v in metric.compute().items()}}


# rows of the results table: label, test-stage mode, benchmark method at batch 1
_ROWS = (("full model", "full", "greedy"), ("draft w/o imitation", "draft", "draft_only"),
         ("draft w/ imitation", "draft_imit", "draft_only_imitation"), ("SSD", "ssd", None))


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def _check(a: argparse.Namespace) -> None:
    from lightning_ssd.backbones import PRESETS

    if not a.quick and a.backbone not in PRESETS:
        raise UsageError(f"--backbone {a.backbone}: the demo fine-tunes a preset from random initialisation; give "
                         f"one of {', '.join(sorted(PRESETS))}")
    checks.draft_length(a.draft)
    if Path(a.root).exists() and not Path(a.root).is_dir():
        raise UsageError(f"--root {a.root} is a file; give a folder for the demo's outputs")


def _test_speedup(tm: dict[str, float], mode: str) -> str:
    """The test stage's throughput speedup of `mode`, marked when it exceeds what its tau allows."""
    if mode == "full":
        return "1.00x"
    speedup, bound = tm.get(f"test/{mode}/speedup"), tm.get(f"test/{mode}/speedup_bound")
    flagged = speedup is not None and bound is not None and speedup > bound * (1 + SLACK)
    return marked(_fmt(speedup, 2, "x"), flagged)


def _bench_speedup(record: dict | None) -> str:
    return "—" if record is None else marked(_fmt(record["speedup_decode"], 2, "x"), bool(record.get("speedup_flag")))


def results_table(summary: dict) -> str:
    """The demo's results table from results.json: quality and tau from the test stage, the batch-1 decode latency
    speedup from the benchmark, and the test stage's batched throughput speedup beside it."""
    tm, bench = summary["test_metrics"], summary["bench"]
    records = bench.get("methods") or {"ssd": bench["ssd"]}  # results.json files before 2026-12-06 kept SSD's only
    batch = summary.get("test_batch_size")
    head = ("method", "BLEU-4", "CIDEr", "tau", "decode speedup, batch 1 (benchmark)",
            f"throughput speedup, test batches{f' of {batch}' if batch else ''}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, mode, method in _ROWS:
        if mode == "ssd":
            label, record = f"SSD (n={summary['n']}, d={summary['draft']})", bench["ssd"]
        else:
            record = records.get(method)
        tau = _fmt(tm.get("test/ssd/tau"), 2) if mode == "ssd" else "—"
        cells = (label, _fmt(tm.get(f"test/{mode}/BLEU-4")), _fmt(tm.get(f"test/{mode}/CIDEr")), tau,
                 _bench_speedup(record), _test_speedup(tm, mode))
        lines.append("| " + " | ".join(cells) + " |")
    trivial = summary["trivial_baseline"]
    lines.append(f"| image-blind baseline | {_fmt(trivial['BLEU-4'])} | {_fmt(trivial['CIDEr'])} | — | — | — |")
    return "\n".join(lines)


def render(summary: dict) -> str:
    """results.md from results.json: the table and the lines that say how each figure was measured."""
    tm, bench, ssd = summary["test_metrics"], summary["bench"], summary["bench"]["ssd"]
    baseline = bench["baseline"]
    num_test = summary.get("num_test") or int(tm.get("test/num_sequences", 0))
    batch = summary.get("test_batch_size")
    samples, repeats = bench.get("num_samples"), bench.get("repeats")
    measured = f"{samples} test images, median of {repeats}" if samples else "test images"
    threads = summary.get("threads")
    timings = summary["timings"]
    lines = [
        f"# Embedded default: {summary['backbone']}, seed {summary['seed']}, n={summary['n']}, "
        f"d={summary['draft']}, {num_test} test images\n",
        results_table(summary),
        f"\nDecode speedup, batch 1: the benchmark ({measured}, after a warm-up) decodes one image at a time; "
        f"decoding seconds of the faster greedy baseline ({baseline['decode_method']}) over the method's on the same "
        "images: the latency a user of one image sees. Throughput speedup: seconds per token of the plain greedy "
        f"loop over the method's on the test stage's batches{f' of {batch}' if batch else ''}, each decoded as one "
        "batch, prefill included; a larger batch erodes it. Quality, tau and identity come from the test stage. "
        f"SSD output identical to the full model's greedy output on "
        f"{_fmt(100 * (tm.get('test/ssd_identical') or 0), 1)}% of test images.",
        f"\nBenchmark: SSD decode speedup {ssd['speedup_decode']:.2f}x, end-to-end {ssd['speedup_e2e']:.2f}x over "
        f"the faster baseline ({baseline['decode_method']}), tokens identical to transformers' generate: "
        f"{ssd['tokens_identical']}; tau {ssd['mean_accepted_len']:.2f}, alpha {ssd['acceptance_rate']:.3f}"
        + (f"; {threads} CPU thread{'s' if threads > 1 else ''}." if threads else "."),
        f"Training throughput: fine-tune {_fmt(summary['finetune_samples_per_s'])} samples/s, imitation "
        f"{_fmt(summary['imitation_samples_per_s'])} samples/s "
        f"({_fmt(summary['imitation_vs_finetune_throughput'], 2, 'x')}).",
        f"Wall time: {timings['total_s'] / 60:.1f} min "
        + ", ".join(f"{k[:-2]} {v / 60:.1f}" for k, v in timings.items() if k != "total_s") + ".",
    ]
    if FLAG in lines[1]:
        lines.append(f"\n{FLAG} exceeds the speedup the measured tau allows (lightning_ssd/timing.py): a timing "
                     "artefact, such as another job on the CPU; rerun on a quiet machine.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    a = _parser().parse_args(argv)
    _check(a)
    if a.quick:
        a.backbone, a.finetune_epochs, a.imitation_epochs = "tiny-blip2-opt", 1, 1
        a.num_train, a.num_test, a.bench_samples, a.bench_repeats = 64, 8, 2, 1
    threads = set_threads(a.threads)
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. fine-tune the backbone; ChooseLayerCallback writes chosen_n.yaml from the validation split
    t0 = time.perf_counter()
    ft_dir, backbone = root / "finetune", root / "finetune" / "backbone"
    ft = _stage(["fit", "--config", str(EXPERIMENTS / "synthetic" / "finetune.yaml"),
                 "--trainer.default_root_dir", str(ft_dir), "--trainer.max_epochs", str(a.finetune_epochs),
                 "--model.init_args.backbone", a.backbone, "--model.init_args.export_dir", str(backbone),
                 "--seed_everything", str(a.seed), "--model.init_args.backbone_seed", str(a.seed),
                 *_val_overrides(a, a.finetune_epochs, "full"), *_data_overrides(a)])
    ft_metrics = _metrics(ft, "train/") | _metrics(ft, "val/")
    chosen = ft_dir / "chosen_n.yaml"
    n = int(yaml.safe_load(chosen.read_text())["model"]["init_args"]["n"])
    timings["finetune_s"] = time.perf_counter() - t0

    # 2. imitation training on the frozen backbone, at the chosen n
    t0 = time.perf_counter()
    im_dir = root / "imitation"
    trimmed = [] if a.full_validation else _callbacks_without_fit_sweep(root)
    im = _stage(["fit", "--config", str(EXPERIMENTS / "synthetic.yaml"), "--config", str(chosen), *trimmed,
                 "--trainer.default_root_dir", str(im_dir), "--trainer.max_epochs", str(a.imitation_epochs),
                 "--model.init_args.backbone", str(backbone), "--seed_everything", str(a.seed),
                 *_val_overrides(a, a.imitation_epochs, "draft_imit"),
                 *_data_overrides(a)])
    im_metrics = _metrics(im, "train/")
    ckpt = im_dir / "checkpoints" / "last.ckpt"
    timings["imitation_s"] = time.perf_counter() - t0

    # 3. SSD test on the test split: every method on the same images
    t0 = time.perf_counter()
    test = _stage(["test", "--config", str(EXPERIMENTS / "synthetic" / "ssd_test.yaml"), "--ckpt_path", str(ckpt),
                   "--trainer.default_root_dir", str(root / "ssd_test"), "--model.init_args.backbone", str(backbone),
                   "--seed_everything", str(a.seed),
                   "--model.init_args.n", str(n), "--model.init_args.draft", a.draft, *_data_overrides(a)])
    tm = _metrics(test, "test/")
    timings["test_s"] = time.perf_counter() - t0

    # 4. speed benchmark of the trained model against both greedy baselines
    from lightning_ssd.bench.runner import BenchConfig, run_benchmark

    t0 = time.perf_counter()
    bench = run_benchmark(BenchConfig(backbone=str(backbone), n=n, drafts=[a.draft], imitation=str(ckpt),
                                      num_samples=a.bench_samples, repeats=a.bench_repeats, threads=threads))
    timings["bench_s"] = time.perf_counter() - t0
    ssd = next(r for r in bench["methods"] if r["d"] == a.draft)

    trivial = _trivial_baseline(a.num_train, a.num_test)
    ft_sps, im_sps = ft_metrics.get("train/samples_per_s"), im_metrics.get("train/samples_per_s")
    summary = {
        "backbone": a.backbone, "seed": a.seed, "n": n, "draft": a.draft, "num_test": a.num_test,
        "test_batch_size": min(test.datamodule.eval_batch_size, a.num_test), "threads": threads, "test_metrics": tm,
        "trivial_baseline": trivial,
        "ssd_identical_test": tm.get("test/ssd_identical"),
        "bench": {"baseline": bench["baseline"], "ssd": ssd, "num_samples": a.bench_samples,
                  "repeats": a.bench_repeats,
                  "methods": {r["method"]: r for r in bench["methods"] if r["batch_size"] == 1}},
        "finetune_samples_per_s": ft_sps, "imitation_samples_per_s": im_sps,
        "imitation_vs_finetune_throughput": (im_sps / ft_sps) if ft_sps and im_sps else None,
        "timings": timings | {"total_s": time.perf_counter() - started},
    }
    text = render(summary)
    atomic_write_text(root / "results.json", json.dumps(summary, indent=2))
    atomic_write_text(root / "results.md", text + "\n")
    print(text)
