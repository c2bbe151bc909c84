"""`python -m lightning_ssd reproduce`: the paper's comparisons by one command, on the embedded synthetic benchmark.

One backbone is fine-tuned (stage 1, shared by every row, as in the paper); then Table 1 (full model, drafts without
and with imitation, Draft & Verify, the LayerSkip and Kangaroo hooks, and imitation trained with CE, +CS, +CS+KD),
Table 5 (fusion strategies), Table 6 (lambda -> n, the n <= L/2 limit lifted), figure 9 (speedup and BLEU-4 against
d), figure 6 (acceptance against output position t) and figures 1, 7, 8 (joint, frozen and mixed training) are
measured, and written next to the paper's numbers under --out: table1.md, table5.md, table6.md, PNGs and a README.
The rest of the paper (--parts rest) fine-tunes a backbone per task and writes Table 3 (dialog MRR; zero-shot in-,
near- and out-of-domain captions), Table 2 (long answers), Table 9 of Appendix A.2 (one-word VQA answers), Table 4's
note, the distribution shift, the output-length question (length.md, fig_length.png) and the size-ratio grid
(grid.md, fig_grid.png).

Stages whose outputs exist are skipped, so an interrupted run resumes where it stopped (rerun the same command);
every stage's wall time goes to <root>/timings.json. --quick runs the whole plan on tiny backbones in a few
minutes (a smoke test: its numbers mean nothing); --seeds 0 1 2 repeats the training stages per seed and the tables
give the median and range.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from lightning_ssd.errors import ToolParser, UsageError, at_least
from lightning_ssd.reproduce.settings import QUICK, Estimates, Settings, with_overrides
from lightning_ssd.threads import add_threads_argument, set_threads


def _parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="python -m lightning_ssd reproduce", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/reproduce", help="stage outputs: checkpoints, logs, records")
    p.add_argument("--out", default="results/paper", help="the report: tables, figures, README.md")
    p.add_argument("--quick", action="store_true", help="the whole plan on tiny presets, in a few minutes")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: 0)")
    p.add_argument("--backbone", default=None, help="preset fine-tuned from random initialisation")
    p.add_argument("--t5-backbone", default=None, help="BLIP-2 Flan-T5 preset of Table 3 (dialog, zero-shot, shift)")
    p.add_argument("--llava-backbone", default=None, help="LLaVA preset of Table 2 (long answers) and A.2 (VQA)")
    p.add_argument("--finetune-epochs", type=at_least(1), default=None)
    p.add_argument("--imitation-epochs", type=at_least(1), default=None, help="Tables 1 and 5")
    p.add_argument("--ablation-epochs", type=at_least(1), default=None, help="imitation epochs of Table 6's rows")
    p.add_argument("--figure-epochs", type=at_least(1), default=None, help="epochs of the joint / frozen / mixed runs")
    p.add_argument("--mixed-joint-epochs", type=at_least(0), default=None,
                   help="joint epochs of the mixed run (fig. 8)")
    p.add_argument("--num-train", type=at_least(1), default=None)
    p.add_argument("--num-val", type=at_least(1), default=None,
                   help="validation images (choice of n, D&V search, figures)")
    p.add_argument("--num-test", type=at_least(1), default=None)
    p.add_argument("--draft", type=at_least(1), default=None, help="d of the SSD tests")
    p.add_argument("--test-batch-size", type=at_least(1), default=None,
                   help="test images decoded per batch (default 1: per-image latency, as the paper's speedups)")
    p.add_argument("--sweep-drafts", type=at_least(1), nargs="+", default=None, help="the values of d of figure 9")
    p.add_argument("--lambdas", nargs="+", default=None, help="Table 6's costs per layer: 1/L, 1/10, 0.05, ...")
    p.add_argument("--dv-trials", type=at_least(0), default=None, help="TPE trials of Draft & Verify's skip-set search")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (a JVM start per decoding mode)")
    add_threads_argument(p)
    p.add_argument("--parts", nargs="+", choices=("tables", "rest"), default=None,
                   help="tables: Tables 1, 5, 6 and figures 1, 6-9; rest: Tables 2, 3, 4, A.2 and the output-length "
                        "question (default: both)")
    p.add_argument("--judge-url", default=None,
                   help="an OpenAI-compatible chat endpoint that scores Table 2's long answers as MM-Vet and "
                        "LLaVA-Wild do (without it those columns read needs_judge)")
    p.add_argument("--judge-model", default=None, help="the judge's model name (with --judge-url)")
    p.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge's API key (unset: none is sent)")
    p.add_argument("--jobs", type=at_least(1), default=1,
                   help="run this many processes side by side (one torch thread each unless --threads): each seed's "
                        "stages are split into up to this many lanes that share no dependency, each lane a process "
                        "logging to <root>/seed<S>[_lane<K>].log; then the report")
    p.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)  # one lane's process of --jobs
    p.add_argument("--lane", type=at_least(0), default=None, help=argparse.SUPPRESS)  # which lane of --jobs it runs
    p.add_argument("--dry-run", action="store_true", help="print the stages and the estimate, run nothing")
    return p


def settings_from(a: argparse.Namespace) -> Settings:
    """The preset (default or --quick) with the flags given on the command line."""
    tuples = {k: tuple(v) if v is not None else None for k, v in
              (("seeds", a.seeds), ("sweep_drafts", a.sweep_drafts), ("lambdas", a.lambdas))}
    return with_overrides(
        QUICK if a.quick else Settings(), backbone=a.backbone, t5_backbone=a.t5_backbone,
        llava_backbone=a.llava_backbone, finetune_epochs=a.finetune_epochs,
        imitation_epochs=a.imitation_epochs, ablation_epochs=a.ablation_epochs, figure_epochs=a.figure_epochs,
        mixed_joint_epochs=a.mixed_joint_epochs, num_train=a.num_train, num_val=a.num_val, num_test=a.num_test,
        draft=a.draft, test_batch_size=a.test_batch_size, dv_trials=a.dv_trials,
        meteor=False if a.no_meteor else None, judge_url=a.judge_url, judge_model=a.judge_model,
        judge_key_env=a.judge_key_env, **tuples)


def main(argv: list[str] | None = None) -> None:
    """Runs (or resumes) the reproduction; exits with status 1 when a stage failed (rerun to retry it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(args)
    from lightning_ssd.backbones import PRESETS

    for flag, value in (("--backbone", a.backbone), ("--t5-backbone", a.t5_backbone),
                        ("--llava-backbone", a.llava_backbone)):
        if value is not None and value not in PRESETS:
            raise UsageError(f"{flag} {value}: reproduce fine-tunes a preset from random initialisation; give one of "
                             f"{', '.join(sorted(PRESETS))}")
    try:
        settings = settings_from(a)
    except ValueError as err:  # the settings' own checks, whose messages name the flags
        raise UsageError(str(err)) from err
    from lightning_ssd.reproduce.cli_stages import write_fragments
    from lightning_ssd.reproduce.plan import PlanFailed, minutes, pending_minutes, run_plan
    from lightning_ssd.reproduce.stages import PARTS, build_plan

    # --quick's tiny models run fastest on one thread; the LightningCLI stages run in this process and keep the count
    set_threads(1 if a.threads is None and a.quick else a.threads)
    root, out = Path(a.root), Path(a.out)
    command = " ".join(["python -m lightning_ssd reproduce", *map(shlex.quote, args)])
    stages = build_plan(settings, root, out, command, tuple(a.parts or PARTS), reports=not a.no_report)
    if a.lane is not None:
        from lightning_ssd.reproduce.side_by_side import lanes

        dealt = lanes(stages, a.jobs)
        if a.lane >= len(dealt):
            raise UsageError(f"--lane {a.lane}: this plan has {len(dealt)} lane(s) at --jobs {a.jobs}")
        stages = dealt[a.lane]
    total = minutes(stages)
    est = Estimates(with_overrides(Settings(), test_batch_size=settings.test_batch_size))  # the default sizes
    print(f"reproduce: {len(stages)} stages, estimated {total:.0f} min in all, {pending_minutes(stages):.0f} min "
          f"still to run (scaled from the measured stage times of the default sizes on a 2-core CPU: fine-tune "
          f"{est.finetune():.1f} min, imitation 12 epochs {est.imitation(12):.1f} min, test {est.test():.1f} min "
          f"in test batches of {settings.test_batch_size}; Table 6 counts one run per lambda)", flush=True)
    if a.dry_run:
        for i, s in enumerate(stages, 1):
            print(f"[{i}/{len(stages)}] {s.name}: ~{s.estimate_min:.1f} min -> {', '.join(map(str, s.outputs))}")
        return
    write_fragments(root / "fragments")
    started = time.perf_counter()
    if a.jobs > 1 and a.lane is None:
        _side_by_side(args, settings, a, root, out, command)
    try:
        run_plan(stages, root / "timings.json", log=lambda line: print(line, flush=True))
    except PlanFailed as err:
        print(f"reproduce: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    where = "no report (the parent process writes it)" if a.no_report else f"report in {out}/README.md"
    print(f"reproduce: done in {(time.perf_counter() - started) / 60:.1f} min; {where}")


def _side_by_side(args: list[str], settings: Settings, a: argparse.Namespace, root: Path, out: Path,
                  command: str) -> None:
    """Each seed's lanes in a process of their own (this command with one seed and `--lane K`, without the report),
    `--jobs` at once; exits with status 1, naming the logs, when one failed (rerun to resume)."""
    from lightning_ssd.reproduce.plan import minutes
    from lightning_ssd.reproduce.side_by_side import lanes, run_side_by_side
    from lightning_ssd.reproduce.stages import PARTS, build_plan

    threads = a.threads or 1
    base = [sys.executable, "-m", "lightning_ssd", "reproduce", *args, "--threads", str(threads), "--no-report"]
    units = []  # (estimated minutes, command, log) of every seed's every lane
    for seed in settings.seeds:
        one = with_overrides(settings, seeds=(seed,))
        seed_lanes = lanes(build_plan(one, root, out, command, tuple(a.parts or PARTS), reports=False), a.jobs)
        for k, lane in enumerate(seed_lanes):
            units.append((minutes(lane), [*base, "--seeds", str(seed), "--lane", str(k)],
                          root / (f"seed{seed}.log" if len(seed_lanes) == 1 else f"seed{seed}_lane{k}.log")))
    units.sort(key=lambda unit: -unit[0])  # the longest lanes first: the last to start are the short ones
    longest = units[0][0]
    commands, logs = [u[1] for u in units], [u[2] for u in units]
    print(f"reproduce: {len(commands)} lanes of seeds {', '.join(map(str, settings.seeds))} side by side, {a.jobs} at "
          f"a time, {threads} thread(s) each (the longest lane estimated {longest:.0f} min); logs in "
          f"{', '.join(str(log) for log in logs)}", flush=True)
    codes = run_side_by_side(commands, logs, a.jobs)
    failed = [str(log) for log, code in zip(logs, codes, strict=True) if code != 0]
    if failed:
        print(f"reproduce: a lane's stages failed (see {', '.join(failed)}); rerun the same command to resume",
              file=sys.stderr)
        raise SystemExit(1)
