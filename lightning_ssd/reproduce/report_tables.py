"""The rows of Tables 1, 5 and 6 (which records, which mode) and their Markdown with notes."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from lightning_ssd.reproduce import notes
from lightning_ssd.reproduce.context import ReportContext
from lightning_ssd.reproduce.layout import LOSS_ROWS, MAIN_FUSION, MAIN_ROW, Layout
from lightning_ssd.reproduce.results import RowSource, read_record
from lightning_ssd.reproduce.tables import TABLE1_COLUMNS, TABLE5_COLUMNS, TABLE6_COLUMNS, collected, render, seed_table

LOSS_LABELS = {"ours_ce": "ours: SSD, imitation by CE", "ours_cs": "ours: SSD, CE+CS",
               "ours_cs_kd": "ours: SSD, CE+CS+KD (default)"}
FUSIONS: tuple[str, ...] = ("average", "concat", "attention")
SPICE_NOTE = ("SPICE is not measured: pycocoevalcap downloads Stanford CoreNLP for it, which fails offline; the "
              "paper's values are shown.")


def _files(ctx: ReportContext, path_of: Callable[[Layout], Path]) -> tuple[Path, ...]:
    return tuple(path_of(layout) for layout in ctx.layouts)


def _row(ctx: ReportContext, table: str, name: str) -> tuple[Path, ...]:
    """Every seed's test record of one row."""
    return _files(ctx, lambda layout: layout.test_metrics(table, name))


def _setting(ctx: ReportContext) -> str:
    s = ctx.settings
    seeds = ", ".join(map(str, s.seeds))
    spread = "; cells of ours: median [min–max] over seeds" if len(s.seeds) > 1 else ""
    return (f"Ours: {s.backbone} (L = {ctx.num_layers}) fine-tuned from random initialisation on the embedded "
            f"synthetic captions ({s.num_train} training, {s.num_test} test images; seed {seeds}{spread}), "
            f"d = {s.draft}, greedy decoding, at most {s.max_new_tokens} new tokens. Spd. is seconds per token of "
            "plain greedy decoding over the method's, measured on the same test images, prefill included, "
            + ("each image decoded alone (latency)" if s.test_batch_size == 1 else
               f"in batches of {s.test_batch_size} (throughput)")
            + "; the paper reports average per-token inference time on GPUs.")


def _meteor_note(ctx: ReportContext) -> list[str]:
    return [] if ctx.settings.meteor else ["METEOR was not scored in this run (--quick or --no-meteor)."]


def table1(ctx: ReportContext) -> str:
    """Table 1 (the paper's BLIP2-FlanT5 block beside ours)."""
    main = _row(ctx, "table1", MAIN_ROW)
    rows = [
        RowSource("full", "full model", main, "full"),
        RowSource("draft", "draft w/o imitation", main, "draft"),
        RowSource("draft_imit", "draft w/ imitation (CE+CS+KD)", main, "draft_imit"),
        RowSource("draft_verify", "Draft & Verify", _files(ctx, lambda lay: lay.draft_verify), "draft_verify"),
        RowSource("layerskip", "LayerSkip: SSD with its early exit", _row(ctx, "table1", "layerskip"), "ssd", "draft",
                  ctx.missing.get("layerskip", "")),
        RowSource("kangaroo", "Kangaroo: SSD with its adapter", _row(ctx, "table1", "kangaroo"), "ssd", "draft_imit",
                  ctx.missing.get("kangaroo", "")),
        *(RowSource(key, LOSS_LABELS[key], _row(ctx, "table1", folder), "ssd", "draft_imit")
          for key, folder, _ in LOSS_ROWS),
    ]
    got = collected(rows)
    by_key = dict((r.key, c) for r, c in got)
    searches = (read_record(layout.draft_verify) for layout in ctx.layouts)
    skipped = [len(search["skip_layers"]) for search in searches if search is not None]
    s = ctx.settings
    text = [
        _setting(ctx) + f" Draft exit n = {ctx.n_label}, chosen on the validation split by the "
        f"{_rule_name(s.exit_rule)} "
        f"(Table 6 shows where the speedup rule puts it); every imitation row trained {s.imitation_epochs} epochs. "
        "Paper: BLIP2-FlanT5-xl (n = 12 of L = 24) on the COCO Karpathy test split; the table's BLIP2-OPT block is "
        "transcribed in lightning_ssd/reproduce/paper.py.",
        notes.draft_without_imitation(by_key), notes.imitation_effect(by_key),
        notes.identity(by_key, ("ours_ce", "ours_cs", "ours_cs_kd", "layerskip", "kangaroo")),
        notes.loss_order(by_key),
        notes.draft_verify(by_key, ctx.num_layers, skipped),
        "The n of the Draft & Verify row is its first skipped layer m (verification runs layers m..L).",
        "Draft-only rows are not verified: their quality is the shallow model's own and their Spd. its speed.",
        "Kangaroo is not in the paper's Table 1 (its paper columns are empty); LayerSkip here is fine-tuned with its "
        "own recipe, so its full model, and hence its SSD output, is its own backbone's.",
        SPICE_NOTE, *_meteor_note(ctx),
        *(f"{name}: not run ({why})." for name, why in ctx.missing.items()),
    ]
    return render("Table 1: COCO-style captioning, our embedded benchmark beside the paper's BLIP2-FlanT5 block",
                  got, TABLE1_COLUMNS, "Table 1", "BLIP2-FlanT5", [t for t in text if t])


def table5(ctx: ReportContext) -> str:
    """Table 5: fusion strategies of the imitation target."""
    def source(fusion: str) -> tuple:
        return _row(ctx, "table1", MAIN_ROW) if fusion == MAIN_FUSION else _row(ctx, "table5", fusion)

    rows = [RowSource(f, f"ours: fusion {f}", source(f), "ssd", "draft_imit") for f in FUSIONS]
    got = collected(rows)
    by_key = dict((r.key, c) for r, c in got)
    text = [
        _setting(ctx) + f" n = {ctx.n_label}; imitation {ctx.settings.imitation_epochs} epochs with CE+CS+KD. The "
        "concatenation row is Table 1's main run. Paper: COCO, n = 15.",
        notes.identity(by_key, FUSIONS, "fusions"),
        *notes.fusion_notes(by_key), *_meteor_note(ctx),
    ]
    return render("Table 5: fusion strategies of the imitation target", got, TABLE5_COLUMNS, "Table 5", "COCO",
                  [t for t in text if t])


# each n rule: (short name, full name), the table labels and the notes
RULE_NAMES: dict[str, tuple[str, str]] = {
    "one_se": ("paper's reward, one-SE tie-break", "paper's reward with a one-standard-error tie-break (the shallowest "
               "layer within one standard error of the best)"),
    "argmax": ("paper's reward", "paper's reward (argmax)"),
    "speedup": ("speedup rule", "speedup rule"),
}


def _rule_name(rule: str) -> str:
    return RULE_NAMES[rule][1]


def _chosen_run(record: Path) -> Path:
    """The metrics of the run a Table 6 row's record points to (the record itself while it is missing)."""
    chosen = read_record(record)
    return record if chosen is None else Path(chosen["metrics"])


def table6(ctx: ReportContext) -> str:
    """Table 6: lambda -> n -> quality and speed, n over every layer."""
    s = ctx.settings
    rows = [RowSource(lam, f"ours: lambda = {lam}",
                      _files(ctx, lambda lay, lam=lam: _chosen_run(lay.lambda_record(lam))), "ssd", "draft_imit")
            for lam in s.lambdas]
    rows.append(RowSource("speedup", f"ours: speedup rule, d = {s.draft}",
                          _files(ctx, lambda lay: _chosen_run(lay.speedup_rule_record)), "ssd", "draft_imit"))
    got = collected(rows)
    by_key = dict((r.key, c) for r, c in got)
    confidences = read_record(ctx.first.confidences) or {}
    epochs = s.ablation_epochs
    text = [
        _setting(ctx) + f" n maximises mean C_l - lambda * l over l = 1..{ctx.num_layers - 1} (the n <= L/2 limit "
        f"lifted, as the paper does for this table) on {confidences.get('count', '?')} validation samples, by the "
        f"paper's argmax; Table 1's n = {ctx.n_label} came from the {_rule_name(s.exit_rule)} over 1..L/2. Imitation "
        f"{epochs} epochs "
        + ("(as Table 1)" if epochs == s.imitation_epochs else f"(Table 1: {s.imitation_epochs})")
        + "; rows that choose the same n share one run. The speedup rule (not in the paper) takes the n of the "
        "highest decode speedup that the cost model predicts from each exit's measured agreement with the full "
        "model. Paper: COCO, L = 24.",
        *notes.lambda_notes(by_key, s.lambdas, ctx.num_layers), SPICE_NOTE, *_meteor_note(ctx),
    ]
    table = render("Table 6: cost per layer lambda, the chosen n, quality and speed", got, TABLE6_COLUMNS, "Table 6",
                   "COCO", [t for t in text if t])
    return table if len(s.seeds) == 1 else table + "\n" + _rules_per_seed(ctx, [r for r, _ in got])


def _n_and_speedup(cells: dict[str, float]) -> str:
    n, speedup = cells["n"], cells["Spd."]
    return f"n = {n:.0f}: {speedup:.2f}x" if math.isfinite(n) and math.isfinite(speedup) else "—"


def _rules_per_seed(ctx: ReportContext, rows: list[RowSource]) -> str:
    """Each rule's n and SSD speedup in each seed: how the rules fare on one backbone, and across backbones."""
    table1_rule = RowSource("table1", f"Table 1's n: the {RULE_NAMES[ctx.settings.exit_rule][0]}, n <= L/2",
                            _row(ctx, "table1", MAIN_ROW), "ssd", "draft_imit")
    lines = seed_table([table1_rule, *rows], ctx.settings.seeds, _n_and_speedup)
    return "\n".join(["## Each rule's n and speedup per seed", "",
                      "Each seed fine-tunes its own backbone, so a rule may choose another n in another seed; "
                      "rows that choose the same n in one seed share that seed's run (Table 1's row is its own run, "
                      f"with {ctx.settings.imitation_epochs} imitation epochs).", "", *lines, ""])

