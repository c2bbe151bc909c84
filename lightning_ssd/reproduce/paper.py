"""The FastVLM paper's own numbers (arXiv 2510.22641), transcribed from its text, each with the table it comes from.

Transcribed: Table 1 (COCO Karpathy test split, both of its backbones: BLIP2-FlanT5 with n = 12 of L = 24 and
BLIP2-OPT with n = 15 of L = 32), Table 5 (fusion strategies, COCO) and Table 6 (lambda -> n; the n <= L/2
restriction lifted). The figures (1, 6, 7, 8, 9) come with no numbers in the text: what the text says about them is
kept as `PaperClaim`s, quoted verbatim. `tests/reproduce/test_paper.py` finds every number and quote in the paper's
text again, so a typo here fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE1_COLUMNS: tuple[str, ...] = ("n", "BLEU-1", "BLEU-4", "CIDEr", "SPICE", "METEOR", "ROUGE-L", "Spd.")
TABLE5_COLUMNS: tuple[str, ...] = ("n", "BLEU-4", "CIDEr", "METEOR", "Spd.")
TABLE6_COLUMNS: tuple[str, ...] = ("n", "BLEU-4", "CIDEr", "METEOR", "SPICE", "Spd.")


@dataclass(frozen=True)
class PaperValue:
    """One number of the paper.

    Attributes:
        source: where it is printed ("Table 1", "Table 5", "Table 6").
        group: the block of the table it sits in (a backbone for Table 1; "COCO" for Tables 5 and 6).
        row: this project's key for the row ("full", "draft", "ours_cs_kd", "average", "1/L", ...).
        label: the row's label as the paper prints it ("BLIP2-FlanT5", "Draft w/o Im", "Our+CS+KD", ...).
        column: the column, in this project's names ("BLEU-4", "METEOR", "Spd." for the speedup factor, "n").
        value: the number (a speedup as a factor: 1.61 for "1.61x").
    """

    source: str
    group: str
    row: str
    label: str
    column: str
    value: float


@dataclass(frozen=True)
class PaperClaim:
    """What the paper's text says about a figure, quoted verbatim (the figures' data are not in the text)."""

    source: str
    text: str


# Table 1, row by row in the paper's order: (key, label, n, BLEU-1, BLEU-4, CIDEr, SPICE, METEOR, ROUGE-L, Spd.)
_TABLE1: dict[str, tuple[tuple[str, str, float, float, float, float, float, float, float, float], ...]] = {
    "BLIP2-FlanT5": (
        ("full", "BLIP2-FlanT5", 24, 84.1, 44.0, 144.6, 24.6, 30.9, 61.8, 1.00),
        ("draft", "Draft w/o Im", 12, 5.2, 0.1, 1.7, 0.00, 0.4, 2.5, 2.00),
        ("draft_imit", "Draft w Im", 12, 65.5, 18.9, 86.3, 14.1, 17.6, 47.5, 2.00),
        ("draft_verify", "Draft & Verify", 12, 74.1, 32.9, 127.8, 21.7, 28.9, 55.7, 1.27),
        ("layerskip", "LayerSkip", 12, 75.6, 33.4, 129.1, 21.9, 29.5, 56.5, 1.25),
        ("ours_ce", "Our", 12, 82.4, 42.5, 139.7, 23.6, 29.7, 59.9, 1.39),
        ("ours_cs", "Our+CS", 12, 83.2, 43.3, 141.9, 24.1, 30.4, 60.6, 1.53),
        ("ours_cs_kd", "Our+CS+KD", 12, 83.8, 43.6, 142.6, 24.3, 30.7, 61.1, 1.61),
    ),
    "BLIP2-OPT": (
        ("full", "BLIP2-OPT", 32, 83.5, 43.7, 143.1, 24.4, 30.9, 61.5, 1.00),
        ("draft", "Draft w/o Im", 15, 7.9, 1.3, 2.5, 0.1, 0.8, 5.2, 2.13),
        ("draft_imit", "Draft w Im", 15, 65.8, 19.5, 91.7, 15.4, 18.1, 47.5, 2.13),
        ("draft_verify", "Draft & Verify", 15, 72.7, 31.4, 125.2, 20.9, 28.1, 54.4, 1.32),
        ("layerskip", "LayerSkip", 15, 73.5, 31.9, 127.0, 21.2, 28.5, 55.9, 1.39),
        ("ours_ce", "Our", 15, 81.8, 42.5, 139.8, 23.6, 29.5, 59.5, 1.49),
        ("ours_cs", "Our+CS", 15, 82.3, 43.0, 142.4, 23.9, 30.0, 60.3, 1.71),
        ("ours_cs_kd", "Our+CS+KD", 15, 82.9, 43.4, 142.5, 24.3, 30.5, 61.2, 1.75),
    ),
}

# Table 5: (key, label, n, BLEU-4, CIDEr, METEOR, Spd.)
_TABLE5 = (
    ("average", "Average", 15, 43.1, 141.0, 30.3, 1.68),
    ("concat", "Concatenation", 15, 43.6, 142.6, 30.7, 1.67),
    ("attention", "Attention-pool", 15, 43.4, 141.8, 30.7, 1.59),
)

# Table 6: (lambda, n, BLEU-4, CIDEr, METEOR, SPICE, Spd.); the lambda is the row's key and label
_TABLE6 = (
    ("1/10", 5, 42.4, 138.7, 29.8, 23.9, 1.88),
    ("1/15", 8, 43.2, 140.4, 30.2, 24.1, 1.75),
    ("1/L", 12, 43.6, 142.6, 30.7, 24.3, 1.61),
    ("1/30", 16, 43.7, 143.1, 30.8, 24.4, 1.42),
    ("1/50", 21, 43.9, 144.0, 30.9, 24.6, 1.17),
)

TABLE1_GROUPS: tuple[str, ...] = tuple(_TABLE1)
TABLE1_FUSION_ROW = "ours_cs_kd"  # Table 5's concatenation row repeats Table 1's Our+CS+KD (BLIP2-FlanT5) quality


def _values(source: str, group: str, rows, columns: tuple[str, ...], labelled: bool = True) -> list[PaperValue]:
    out = []
    for row in rows:
        key, label, numbers = (row[0], row[1], row[2:]) if labelled else (row[0], row[0], row[1:])
        out += [PaperValue(source, group, key, label, c, float(v)) for c, v in zip(columns, numbers, strict=True)]
    return out


PAPER_VALUES: tuple[PaperValue, ...] = (
    *(v for group, rows in _TABLE1.items() for v in _values("Table 1", group, rows, TABLE1_COLUMNS)),
    *_values("Table 5", "COCO", _TABLE5, TABLE5_COLUMNS),
    *_values("Table 6", "COCO", _TABLE6, TABLE6_COLUMNS, labelled=False),
)

PAPER_CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim("Figure 1", "Figure 1 illustrates this trade-off using BLEU-4 scores for the draft model and the full "
                           "model on the BLIP-2 architecture, with the draft model comprising the first 12 layers of "
                           "FlanT5-xl."),
    PaperClaim("Figure 7", "In Figure 7, we show that we save a lot of loss in performance by freezing the backbone."),
    PaperClaim("Figure 7", "Freezing the full model and learning only the imitation network to mimic the final layers "
                           "maintains the backbone optimality and also has minimal loss in draft model performance"),
    PaperClaim("Figure 6", "Initially, the acceptance rate decreases, but it later increases and saturates at a "
                           "higher value."),
    PaperClaim("Figure 8", "This method can provide a better speedup but with overall performance loss, where the "
                           "loss will be due to a hit in full model performance caused by simultaneous training."),
    PaperClaim("Figure 9", "A higher value of d can lead to more wasted generation from the draft model if there are "
                           "rejections while a smaller value of d can lead to more number of full model calls."),
    PaperClaim("Table 6", "we remove the restriction of $n \\leq L/2$ only for the results in Table 6."),
    PaperClaim("Table 5", "Note that the loss in performance is small across fusion strategies."),
)


def paper_values(source: str, group: str | None = None) -> list[PaperValue]:
    """Every transcribed number of `source` ("Table 1", ...), of one `group` if given, in the paper's order."""
    found = [v for v in PAPER_VALUES if v.source == source and (group is None or v.group == group)]
    if not found:
        groups = sorted({v.group for v in PAPER_VALUES if v.source == source})
        raise KeyError(f"no paper values for source={source!r}, group={group!r}; groups of {source}: {groups}")
    return found


def paper_value(source: str, group: str, row: str, column: str) -> float | None:
    """The paper's number in one cell, None where the paper has no such row or column."""
    for v in PAPER_VALUES:
        if (v.source, v.group, v.row, v.column) == (source, group, row, column):
            return v.value
    return None


def paper_label(source: str, group: str, row: str) -> str | None:
    """The paper's own label of a row, None where the paper has no such row."""
    return next((v.label for v in PAPER_VALUES if (v.source, v.group, v.row) == (source, group, row)), None)


def claims(source: str) -> list[PaperClaim]:
    """The quoted statements about one figure or table."""
    return [c for c in PAPER_CLAIMS if c.source == source]
