"""Table 2's judge-scored columns: the long answers of every decoder scored by an LLM judge, as MM-Vet and
LLaVA-Bench-in-the-wild score theirs (`lightning_ssd.metrics.judge`).

The judge is any OpenAI-compatible chat endpoint (`reproduce --judge-url ... --judge-model ...`). Without one, the
stage does not run and the columns read `needs_judge`. The judge sees text only: the instruction, the reference
description (LLaVA-Wild's "Assistant 1", MM-Vet's ground truth) and the decoder's answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_ssd.data.prompts import DETAIL_INSTRUCTION
from lightning_ssd.metrics.judge import JudgedScore
from lightning_ssd.metrics.judge_client import ChatJudge
from lightning_ssd.reproduce.plan import atomic_write_json
from lightning_ssd.reproduce.results import need_record

# the judged column of each metric, as Table 2's paper columns name them
COLUMNS = {"mm-vet": "MM-Vet", "llava-wild": "LLaVA-W"}


def judge_answers(texts: list[str], references: list[list[str]], judge: ChatJudge) -> dict[str, Any]:
    """Both scores of one decoder's answers, with how many answers each judged and failed."""
    found: dict[str, Any] = {}
    for task, column in COLUMNS.items():
        metric = JudgedScore(task, judge, sync_on_compute=False)
        metric.update([DETAIL_INSTRUCTION] * len(texts), texts, [refs[0] for refs in references])
        scores = metric.compute()
        found[column] = scores["score"]
        found[f"{column} failed"] = scores["num_failed"]
    return found


def run_judge(records: list[Path], judge: ChatJudge, model: str, out: Path) -> None:
    """Scores the answers of every decoder in `records` (task records with texts: `task_eval`); writes
    out {"metrics": {test/<mode>/MM-Vet, test/<mode>/LLaVA-W, ...}, "judge": model}."""
    metrics: dict[str, Any] = {}
    for path in records:
        record = need_record(path)
        sequences, references = record.get("per_sequence", {}), record.get("references")
        if references is None or any("text" not in s for seqs in sequences.values() for s in seqs):
            raise ValueError(f"{path} keeps no answer texts (it was written before they were recorded): delete it, "
                             "and rerun reproduce to decode that test again")
        for mode, seqs in sequences.items():
            if mode == "full" and "layerskip" in sequences:
                continue  # the LayerSkip backbone's own plain decoding: not a row of the table
            scores = judge_answers([s["text"] for s in seqs], references, judge)
            metrics |= {f"test/{mode}/{column}": value for column, value in scores.items()}
    atomic_write_json(out, {"metrics": metrics, "judge": model})
