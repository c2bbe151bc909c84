"""The report folder: table1.md, table5.md, table6.md, the figures' PNGs, and a README.md that indexes them.

The README's figure sentences, like the tables' notes, are written from the records: what the paper says about a
figure (quoted from `paper.PAPER_CLAIMS`) and what our curve does, compared in words chosen by the numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lightning_ssd.files import atomic_write_text
from lightning_ssd.reproduce import figures
from lightning_ssd.reproduce.context import ReportContext
from lightning_ssd.reproduce.layout import FIGURE_RUNS, MAIN_ROW
from lightning_ssd.reproduce.paper import claims
from lightning_ssd.reproduce.plan import duration
from lightning_ssd.reproduce.report_tables import table1, table5, table6
from lightning_ssd.reproduce.rest_report import index_lines
from lightning_ssd.reproduce.results import need_record
from lightning_ssd.reproduce.sweep import sweep_mode

TABLES = ("table1.md", "table5.md", "table6.md")
FIGURES = ("fig9_d.png", "fig6_acceptance.png", "fig1_joint_frozen.png", "fig8_mixed.png")
REPORT_FILES = (*TABLES, *FIGURES, "README.md")
INDEX = (
    ("table1.md", "Table 1: full model, drafts, Draft & Verify, LayerSkip, Kangaroo, the loss ablation"),
    ("table5.md", "Table 5: fusion strategies"),
    ("table6.md", "Table 6: lambda -> n -> quality and speedup"),
    ("fig9_d.png", "Figure 9: speedup and BLEU-4 against d"),
    ("fig6_acceptance.png", "Figure 6: acceptance rate against output position t"),
    ("fig1_joint_frozen.png", "Figures 1 and 7: joint training against a frozen backbone"),
    ("fig8_mixed.png", "Figure 8: mixed training (joint, then frozen)"),
)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def fig6_sentence(test: dict[str, Any]) -> str:
    ts, rate = figures.acceptance_curve(test["acceptance_by_step"], test["judged_by_step"])
    if len(rate) < 3:
        return "Too few output positions had enough judged drafts to describe the curve."
    third = max(1, len(rate) // 3)
    parts = [(ts[:third], rate[:third]), (ts[third:-third], rate[third:-third]), (ts[-third:], rate[-third:])]
    early, middle, late = (_mean(r) for _, r in parts)
    shape = ("falls, then rises" if middle < early - 0.01 and late > middle + 0.01 else "rises" if late > early + 0.01
             else "falls" if late < early - 0.01 else "stays flat")
    spans = ", ".join(f"{m:.2f} at t = {t[0]}-{t[-1]}" for (t, _), m in zip(parts, (early, middle, late), strict=True)
                      if t)
    return f"Ours (SSD with imitation, the test stage): mean acceptance {spans}: it {shape}."


def _speeds(sweep: dict[str, Any]) -> dict[int, float]:
    return {d: sweep["metrics"][f"test/{sweep_mode(d)}/speedup"] for d in sweep["drafts"]}


def _fastest(speeds: dict[int, float]) -> int:
    return max(speeds, key=speeds.get)


def fig9_sentence(sweep: dict[str, Any]) -> str:
    m, ds = sweep["metrics"], sweep["drafts"]
    speeds = _speeds(sweep)
    bleu = [m[f"test/{sweep_mode(d)}/BLEU-4"] for d in ds]
    best = _fastest(speeds)
    flat = max(bleu) - min(bleu) < 1e-6
    return (f"Ours: the fastest d is {best} ({speeds[best]:.2f}x; d = {ds[0]}: {speeds[ds[0]]:.2f}x, d = {ds[-1]}: "
            f"{speeds[ds[-1]]:.2f}x); BLEU-4 " + ("is the same for every d (SSD is lossless)." if flat else
                                                  f"ranges {min(bleu):.2f}-{max(bleu):.2f} over d."))


def _curves(histories: dict[str, dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Per run, the full model's and the draft's validation BLEU-4 after each epoch (runs that logged both)."""
    curves = {}
    for run, history in histories.items():
        full, draft = history["val"].get(figures.FULL, []), history["val"].get(figures.DRAFT, [])
        if full and draft:
            curves[run] = (full, draft)
    return curves


def _trajectory(run: str, full: list[float], draft: list[float]) -> str:
    return f"{run}: full model BLEU-4 {full[0]:.1f} -> {full[-1]:.1f}, draft {draft[0]:.1f} -> {draft[-1]:.1f}"


UNCONVERGED = ("the embedded default's backbone is fine-tuned for 2 epochs from random initialisation and is still "
               "learning, so training it on in the joint run's CE term improves it, where the paper's pretrained, "
               "converged backbone has little to gain and loses to the draft's objectives")
CLEAR = 0.5  # BLEU-4 points: smaller differences between two runs' last epochs are not read as a gain or a loss


def _last_epoch_gap(curves: dict[str, tuple[list[float], list[float]]], run: str) -> float:
    """The full model's last-epoch BLEU-4 of `run` minus the frozen run's; NaN when either logged none."""
    return curves[run][0][-1] - curves["frozen"][0][-1] if {run, "frozen"} <= curves.keys() else math.nan


def training_sentences(histories: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Figures 1, 7 and 8 against their paper statements: the frozen, joint and mixed runs' last epochs compared."""
    curves = _curves(histories)
    if not set(FIGURE_RUNS) <= curves.keys():
        return dict.fromkeys(("fig1", "fig7", "fig8"), "No per-epoch metrics were logged.")
    (f_full, f_draft), (j_full, j_draft), (m_full, m_draft) = (curves[r] for r in FIGURE_RUNS)
    both = (f"Ours, first to last epoch: {_trajectory('frozen', f_full, f_draft)}; "
            f"{_trajectory('joint', j_full, j_draft)}.")
    gap = _last_epoch_gap(curves, "joint")
    if gap < -CLEAR:
        fig7 = (f"As in the paper, freezing keeps the full model's quality: joint training ends {-gap:.1f} BLEU-4 "
                f"below the frozen backbone ({j_full[-1]:.1f} against {f_full[-1]:.1f}).")
    elif gap <= CLEAR:
        fig7 = (f"Joint and frozen training end within {CLEAR} BLEU-4 of each other here ({j_full[-1]:.1f} against "
                f"{f_full[-1]:.1f}), so freezing saves nothing measurable: {UNCONVERGED}.")
    else:
        fig7 = (f"Not here: the joint run's full model ends {gap:.1f} BLEU-4 above the frozen backbone's "
                f"({j_full[-1]:.1f} against {f_full[-1]:.1f}): {UNCONVERGED}. The frozen draft ends at "
                f"{f_draft[-1]:.1f}, the joint one at {j_draft[-1]:.1f}.")
    m_gap = _last_epoch_gap(curves, "mixed")
    fig8 = (f"Ours: {_trajectory('mixed', m_full, m_draft)}, against the frozen run's {f_full[-1]:.1f} and "
            f"{f_draft[-1]:.1f}; the mixed run's full model ends " +
            (f"{-m_gap:.1f} BLEU-4 below the frozen one's, the performance loss the paper describes." if m_gap < -CLEAR
             else f"{m_gap:.1f} BLEU-4 above the frozen one's, not below it as in the paper: its joint epochs train "
                  "the still-learning backbone on (see Figure 7)." if m_gap > CLEAR
             else f"within {CLEAR} BLEU-4 of the frozen one's ({m_gap:+.1f}): no measurable loss, unlike the paper's.")
            +
            " Speed is not compared: these runs validate the full model and the draft alone, not SSD.")
    return {"fig1": both, "fig7": fig7, "fig8": fig8}


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.1f}"


def seeds_sentence(ctx: ReportContext) -> str | None:
    """Whether the figures' readings hold in every seed: the training gaps and the fastest d, seed by seed."""
    if len(ctx.layouts) == 1:
        return None
    joint, mixed, fastest = [], [], []
    for layout in ctx.layouts:
        curves = _curves({run: need_record(layout.history(run)) for run in FIGURE_RUNS})
        joint.append(_signed(_last_epoch_gap(curves, "joint")))
        mixed.append(_signed(_last_epoch_gap(curves, "mixed")))
        fastest.append(str(_fastest(_speeds(need_record(layout.sweep)))))
    seeds = ", ".join(str(layout.seed) for layout in ctx.layouts)
    return (f"Seed by seed ({seeds}): the full model's last-epoch validation BLEU-4, joint run minus frozen run: "
            f"{', '.join(joint)}; mixed run minus frozen run: {', '.join(mixed)}; the fastest d of Figure 9: "
            f"{', '.join(fastest)}.")


def wall_times(ctx: ReportContext) -> tuple[str, list[str]]:
    """The stages' summed wall time, with each seed's share ("228.1 min; seed 0: 80.2 min, ..."), and a table row per
    stage."""
    try:
        timings = json.loads(ctx.timings.read_text())
    except FileNotFoundError:
        timings = {}
    done = {name: t for name, t in timings.items() if t.get("status") == "done"}
    rows = [f"| {name} | {duration(t['seconds'])} | {t.get('estimate_min', 0):.1f} min |" for name, t in done.items()]
    per_seed: dict[str, float] = {}
    for name, t in done.items():
        head = name.split(" ", 1)[0]
        if head.startswith("seed") and head[4:].isdigit():
            per_seed[head[4:]] = per_seed.get(head[4:], 0.0) + t["seconds"]
    shares = ", ".join(f"seed {seed}: {seconds / 60:.1f} min" for seed, seconds in sorted(per_seed.items()))
    total = f"{sum(t['seconds'] for t in done.values()) / 60:.1f} min"
    return (f"{total}; {shares}" if shares else total), rows


def readme(ctx: ReportContext, sentences: dict[str, str]) -> str:
    total, rows = wall_times(ctx)
    lines = [
        "# FastVLM's comparisons on the embedded synthetic benchmark", "",
        f"Written by `{ctx.command}` ({ctx.settings.preset} preset, seeds {list(ctx.settings.seeds)}); the stages' "
        f"wall time adds up to {total} (stages run in earlier invocations included). Every number of "
        "ours comes from this run's records; the paper's are transcribed in lightning_ssd/reproduce/paper.py.", "",
        "| file | what |", "|---|---|", *(f"| [{name}]({name}) | {what} |" for name, what in INDEX),
        *index_lines(ctx.out), "",
        "## Figures: the paper's statements and ours", "",
    ]
    for source, key in (("Figure 9", "fig9"), ("Figure 6", "fig6"), ("Figure 1", "fig1"), ("Figure 7", "fig7"),
                        ("Figure 8", "fig8")):
        quoted = " ".join(f"\"{c.text}\"" for c in claims(source))
        lines += [f"- {source}. Paper: {quoted}", f"  {sentences[key]}"]
    across = seeds_sentence(ctx)
    lines += ["", f"Figures and their sentences show seed {ctx.settings.seeds[0]}."
              + (f" {across}" if across else ""), "", "## Stage wall times", "",
              "| stage | wall time | estimated |", "|---|---|---|", *rows, ""]
    return "\n".join(lines)


def write_report(ctx: ReportContext) -> None:
    """Writes every file of REPORT_FILES into ctx.out (README.md last)."""
    out, first = ctx.out, ctx.first
    for name, build in zip(TABLES, (table1, table5, table6), strict=True):
        atomic_write_text(out / name, build(ctx))
    sweep, test = need_record(first.sweep), need_record(first.test_metrics("table1", MAIN_ROW))
    histories = {run: need_record(first.history(run)) for run in FIGURE_RUNS}
    figures.fig9(sweep, out / "fig9_d.png")
    figures.fig6(test, sweep, out / "fig6_acceptance.png")
    figures.training_figure({k: histories[k] for k in ("frozen", "joint")},
                            "Figs. 1 and 7: joint training of backbone and draft against a frozen backbone",
                            out / "fig1_joint_frozen.png")
    figures.training_figure(histories, "Fig. 8: mixed training (joint epochs, then the backbone frozen)",
                            out / "fig8_mixed.png")
    sentences = {"fig9": fig9_sentence(sweep), "fig6": fig6_sentence(test), **training_sentences(histories)}
    atomic_write_text(out / "README.md", readme(ctx, sentences))
