"""Table 2's judge stage on hand-made task records, with a judge that answers from the texts it is shown."""

import json

import pytest

from lightning_ssd.metrics.judge_client import ChatJudge
from lightning_ssd.reproduce.judge_eval import run_judge


class ExactJudge(ChatJudge):
    """MM-Vet: 1.0 for an answer equal to the reference, else 0.0; LLaVA-Wild: 10 for the reference, and 10 or 5
    for the answer."""

    def complete(self, messages):
        prompt = messages[-1]["content"]
        if "[Assistant 1]" in prompt:
            reference = prompt.split("[Assistant 1]\n")[1].split("\n[End")[0]
            answer = prompt.split("[Assistant 2]\n")[1].split("\n[End")[0]
            return f"10 {10 if answer == reference else 5}"
        _, reference, answer, _ = (cell.strip() for cell in prompt.rstrip().splitlines()[-1].split("|"))
        return "1.0" if answer == reference else "0.0"


def _record(path, texts: dict[str, list[str]], references=(("a red circle",), ("two blue squares",))):
    per_sequence = {mode: [{"length": 3, "text": t} for t in ts] for mode, ts in texts.items()}
    path.write_text(json.dumps({"metrics": {}, "per_sequence": per_sequence,
                                "references": [list(r) for r in references]}))
    return path


def test_every_decoders_answers_are_judged_and_layerskip_keeps_its_own_row(tmp_path):
    refs = ["a red circle", "two blue squares"]
    task = _record(tmp_path / "test_all.json", {"full": refs, "ssd": refs, "draft": ["a red circle", "a cat"]})
    layerskip = _record(tmp_path / "layerskip_all.json", {"full": ["x", "y"], "layerskip": ["x", "two blue squares"]})
    run_judge([task, layerskip], ExactJudge(), "exact", tmp_path / "judge.json")
    found = json.loads((tmp_path / "judge.json").read_text())
    m = found["metrics"]
    assert found["judge"] == "exact"
    assert m["test/full/MM-Vet"] == m["test/ssd/MM-Vet"] == 100.0 and m["test/full/LLaVA-W"] == 100.0
    assert m["test/draft/MM-Vet"] == 50.0 and m["test/draft/LLaVA-W"] == pytest.approx(75.0)
    assert m["test/layerskip/MM-Vet"] == 50.0  # the LayerSkip backbone's own plain decoding is not judged
    assert m["test/draft/MM-Vet failed"] == 0


def test_a_record_without_answer_texts_is_refused_by_name(tmp_path):
    old = tmp_path / "test_all.json"
    old.write_text(json.dumps({"metrics": {}, "per_sequence": {"full": [{"length": 3}]}}))
    with pytest.raises(ValueError, match="test_all.json keeps no answer texts"):
        run_judge([old], ExactJudge(), "exact", tmp_path / "judge.json")
    assert not (tmp_path / "judge.json").exists()
