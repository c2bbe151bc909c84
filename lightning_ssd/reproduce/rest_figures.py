"""The output-length question: fig_length.png and length.md.

Two views. Fixed lengths: the long-answer block's test images decoded with end-of-sequence off to exactly each cap
of `length_caps` (16, 64, 256 tokens), plain decoding and SSD, so that the per-token time of each shows whether cost
grows with length. Natural lengths: every task block's test sequences grouped by the length the full model gave them
(<= 16, 17-64, 65-256 tokens), with SSD's speedup, tau and alpha in each bucket; a bucket mixes the tasks whose
outputs have that length, which the table names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lightning_ssd.reproduce.context import ReportContext
from lightning_ssd.reproduce.figures import save
from lightning_ssd.reproduce.results import Aggregate

BUCKETS: tuple[tuple[int, int], ...] = ((1, 16), (17, 64), (65, 256))


def _caps(length: dict[str, Any]) -> list[int]:
    return sorted(int(c) for c in length["caps"])


def _at(length: dict[str, Any], cap: int, key: str) -> float:
    return float(length["caps"][str(cap)]["metrics"][key])


def fig_length(length: dict[str, Any] | None, path: Path) -> None:
    """Per-token time of plain decoding and SSD, and SSD's speedup and alpha, against the output length."""
    fig = Figure(figsize=(8.5, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    if length is None:
        left.text(0.5, 0.5, "output-length stage not run", ha="center")
        save(fig, path)
        return
    caps = _caps(length)
    for mode, label in (("full", "plain greedy"), ("ssd", "SSD")):
        left.plot(caps, [_at(length, c, f"test/{mode}/ms_per_token") for c in caps], marker="o", label=label)
    left.set(xscale="log", xlabel="output length (tokens, end-of-sequence off)", ylabel="ms per token",
             title="per-token decode time", ylim=(0, None))
    right.plot(caps, [_at(length, c, "test/ssd/speedup") for c in caps], marker="o", label="SSD speedup (x)")
    right.axhline(1.0, color="grey", lw=0.8, ls="--", label="plain greedy")
    twin = right.twinx()
    twin.plot(caps, [_at(length, c, "test/ssd/alpha") for c in caps], marker="s", color="tab:green", label="alpha")
    twin.set(ylabel="alpha (per-draft acceptance)", ylim=(0, 1.05))
    right.set(xscale="log", xlabel="output length (tokens, end-of-sequence off)", ylabel="speedup over plain (x)",
              title="SSD against output length", ylim=(0, None))
    for ax in (left, right):
        ax.set_xticks(caps, [str(c) for c in caps])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    lines, labels = right.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    right.legend(lines + more, labels + more_labels, fontsize=8, loc="best")
    fig.suptitle(f"Output length: {length['images']} long-answer test images, d = {length['d']}, n = {length['n']}")
    save(fig, path)


def natural_buckets(blocks: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Per bucket of the full model's output length: sequences, tasks, SSD speedup, tau, alpha, both ms/token."""
    rows = []
    for lo, hi in BUCKETS:
        full_s = ssd_s = tokens = cycles = accepted = judged = count = 0.0
        tasks = []
        for name, record in blocks.items():
            if record is None or "ssd" not in record.get("per_sequence", {}):
                continue
            pairs = [(f, s) for f, s in zip(record["per_sequence"]["full"], record["per_sequence"]["ssd"], strict=True)
                     if lo <= f["length"] <= hi]
            if pairs:
                tasks.append(name)
            for f, s in pairs:
                full_s += f["prefill_s"] + f["decode_s"]
                ssd_s += s["prefill_s"] + s["decode_s"]
                tokens += s["length"]
                cycles += s["cycles"]
                accepted += s["accepted"]
                judged += s["judged"]
                count += 1
        rows.append({"bucket": f"{lo}-{hi}" if lo > 1 else f"<= {hi}", "sequences": int(count), "tasks": tasks,
                     "speedup": full_s / ssd_s if ssd_s else float("nan"),
                     "tau": tokens / cycles if cycles else float("nan"),
                     "alpha": accepted / judged if judged else float("nan"),
                     "full_ms": 1000 * full_s / tokens if tokens else float("nan"),
                     "ssd_ms": 1000 * ssd_s / tokens if tokens else float("nan")})
    return rows


def _f(v: float, digits: int, suffix: str = "") -> str:
    return "—" if v != v else f"{v:.{digits}f}{suffix}"


def length_sentence(length: dict[str, Any]) -> str:
    caps = _caps(length)
    first, last = caps[0], caps[-1]
    full = [_at(length, c, "test/full/ms_per_token") for c in (first, last)]
    ssd = [_at(length, c, "test/ssd/ms_per_token") for c in (first, last)]
    spd = [_at(length, c, "test/ssd/speedup") for c in caps]
    trend = ("grows" if spd[-1] > spd[0] * 1.05 else "falls" if spd[-1] < spd[0] * 0.95 else "holds")
    return (f"From {first} to {last} tokens plain decoding's per-token time goes from {full[0]:.2f} to "
            f"{full[1]:.2f} ms ({full[1] / full[0]:.2f}x) and SSD's from {ssd[0]:.2f} to {ssd[1]:.2f} ms "
            f"({ssd[1] / ssd[0]:.2f}x); "
            f"SSD's speedup {trend} with length ({', '.join(f'{s:.2f}x' for s in spd)} at "
            f"{', '.join(map(str, caps))} tokens). The paper tested answers of 9.8-14.5 tokens on average and does "
            "not answer this; past the end of its trained answer the model continues its own text, which the draft "
            "follows as it follows any text, so the longest cap measures cost more than task quality.")


def across_seeds(seeds: Sequence[int], lengths: Sequence[dict[str, Any] | None]) -> str | None:
    """SSD's speedup at each fixed length, median [min–max] over the seeds' length records (None: one seed)."""
    found = [r for r in lengths if r is not None]
    if len(found) < 2:
        return None
    def cell(cap: int) -> str:
        speedups = tuple(r["caps"][str(cap)]["metrics"]["test/ssd/speedup"] for r in found if str(cap) in r["caps"])
        return f"{cap} tokens {Aggregate(speedups).fmt(2, 'x')}"

    cells = [cell(cap) for cap in _caps(found[0])]
    measured = ", ".join(str(seed) for seed, r in zip(seeds, lengths, strict=True) if r is not None)
    return f"Over seeds {measured}, SSD's speedup (median [min–max]): {'; '.join(cells)}."


def length_markdown(ctx: ReportContext, length: dict[str, Any] | None, blocks: dict[str, Any],
                    lengths: Sequence[dict[str, Any] | None] = ()) -> str:
    """length.md: the first seed's fixed-length table (and `lengths`, every seed's record, as one line), then the
    natural output lengths of the first seed's task blocks."""
    lines = ["# Open question: does the speedup hold on long outputs?", ""]
    if length is not None:
        lines += ["## Fixed output lengths (end-of-sequence off, long-answer backbone)", "",
                  "| output tokens | plain ms/token | SSD ms/token | Spd. | tau | alpha | identical |",
                  "|---|---|---|---|---|---|---|"]
        for cap in _caps(length):
            m = length["caps"][str(cap)]["metrics"]
            lines.append(f"| {cap} | {m['test/full/ms_per_token']:.2f} | {m['test/ssd/ms_per_token']:.2f} | "
                         f"{m['test/ssd/speedup']:.2f}x | {m['test/ssd/tau']:.2f} | {m['test/ssd/alpha']:.3f} | "
                         f"{100 * m['test/ssd_identical']:.1f}% |")
        lines += ["", f"- {length['images']} test images decoded one at a time at each length; d = {length['d']}, "
                  f"n = {length['n']}. Seed {ctx.settings.seeds[0]}.", f"- {length_sentence(length)}"]
        spread = across_seeds(ctx.settings.seeds, lengths)
        lines += [f"- {spread}", ""] if spread else [""]
    lines += ["## Natural output lengths (every task block's test split, bucketed by the full model's length)", "",
              "| tokens | sequences | tasks | Spd. | tau | alpha | plain ms/token | SSD ms/token |",
              "|---|---|---|---|---|---|---|---|"]
    for row in natural_buckets(blocks):
        lines.append(f"| {row['bucket']} | {row['sequences']} | {', '.join(row['tasks']) or '—'} | "
                     f"{_f(row['speedup'], 2, 'x')} | {_f(row['tau'], 2)} | {_f(row['alpha'], 3)} | "
                     f"{_f(row['full_ms'], 2)} | {_f(row['ssd_ms'], 2)} |")
    lines += ["", "- A bucket's tasks differ in how predictable their words are as well as in length; the fixed-length "
              "table above holds the task constant. The synthetic answers stop at 63 tokens, so the 65-256 bucket "
              "fills only from the fixed-length run.", ""]
    return "\n".join(lines)
