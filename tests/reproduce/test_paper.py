"""The transcribed paper numbers and quotes are found again in the paper's own text (catches typos)."""

import re
from pathlib import Path

import pytest

from lightning_ssd.reproduce.paper import PAPER_CLAIMS, PAPER_VALUES, paper_value, paper_values

PAPER = Path("/work/shared/paper/fastvlm-2510.22641.txt")
pytestmark = pytest.mark.skipif(not PAPER.exists(), reason=f"the paper's text is not at {PAPER}")

# The table blocks: each starts at its header line and ends at its caption.
BLOCKS = {
    ("Table 1", "BLIP2-FlanT5"): ("<i>BLIP2-FlanT5</i>", "<i>BLIP2-OPT</i>"),
    ("Table 1", "BLIP2-OPT"): ("<i>BLIP2-OPT</i>", "Table 1:"),
    ("Table 5", "COCO"): ("Fusion-Strategy", "Table 5:"),
    ("Table 6", "COCO"): ("λ\tn\tBLEU4", "Table 6:"),
}


def _rows(text: str, start: str, end: str) -> dict[str, list[float]]:
    """The block's rows by their first cell, numbers parsed (underlines and the x of speedups removed)."""
    block = text[text.index(start): text.index(end, text.index(start))]
    rows = {}
    for line in block.splitlines()[1:]:
        cells = [re.sub(r"</?u>|×|\\times", "", c).strip() for c in line.split("\t")]
        if len(cells) > 2:
            rows[cells[0]] = [float(c) for c in cells[1:] if c]
    return rows


@pytest.fixture(scope="module")
def text() -> str:
    return PAPER.read_text(encoding="utf-8")


@pytest.mark.parametrize("source,group", list(BLOCKS))
def test_every_transcribed_number_is_in_the_paper(text, source, group):
    rows = _rows(text, *BLOCKS[(source, group)])
    values = paper_values(source, group)
    labels = list(dict.fromkeys(v.label for v in values))
    assert labels == list(rows), "rows missing or out of the paper's order"
    for label in labels:
        ours = [v.value for v in values if v.label == label]
        assert ours == pytest.approx(rows[label], abs=1e-9), f"{source} {group} row {label!r}"


def test_a_few_cells_by_name():
    assert paper_value("Table 1", "BLIP2-FlanT5", "ours_cs_kd", "Spd.") == 1.61
    assert paper_value("Table 1", "BLIP2-OPT", "draft_imit", "CIDEr") == 91.7
    assert paper_value("Table 5", "COCO", "concat", "BLEU-4") == 43.6
    assert paper_value("Table 6", "COCO", "1/50", "n") == 21
    assert paper_value("Table 6", "COCO", "1/L", "kangaroo") is None
    assert {v.source for v in PAPER_VALUES} == {"Table 1", "Table 5", "Table 6"}


def test_every_quote_is_verbatim(text):
    flat = " ".join(text.split())
    for claim in PAPER_CLAIMS:
        assert " ".join(claim.text.split()) in flat, f"{claim.source}: {claim.text[:60]}..."
