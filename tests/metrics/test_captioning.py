import logging
import math
import shutil
import subprocess
import threading

import pytest
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from lightning_ssd.metrics import CaptionScores, captioning
from lightning_ssd.metrics.captioning import ptb_tokenize, spice_jars

# pycocoevalcap's PTB tokenizer runs on Java: every compute() here starts a short JVM (~0.3 s); METEOR ~8 s.
requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")


def _scores(preds, refs, **kwargs):
    metric = CaptionScores(meteor=False, spice=False, **kwargs)
    metric.update(preds, refs)
    return metric.compute()


@requires_java
def test_identical_caption_scores_100():
    caption = "a man is riding a brown horse on the beach"
    scores = _scores([caption], [[caption]])
    assert list(scores) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"]
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert scores[name] == pytest.approx(100.0, abs=1e-4)


@requires_java
def test_rouge_l_by_hand():
    scores = _scores(["A cat sat."], [["a cat sat on the mat"]])
    # LCS = 3 tokens: precision 3/3, recall 3/6; F = (1 + b^2) P R / (R + b^2 P) with b = 1.2.
    p, r, b2 = 1.0, 0.5, 1.2**2
    assert scores["ROUGE-L"] == pytest.approx(100 * (1 + b2) * p * r / (r + b2 * p))


@requires_java
def test_cider_by_hand():
    scores = _scores(["dog runs", "cat sleeps"], [["dog runs fast"], ["cat sleeps"]])
    # Every n-gram is in one of the two images' references: idf = log(2) for all, so it cancels in the
    # cosines. Image 1: 1-grams 2/sqrt(2*3), 2-grams 1/sqrt(2), no 3-/4-grams, length penalty exp(-1/72).
    # Image 2: identical, cosine 1 for 1- and 2-grams. CIDEr-D = 10 * mean over n = 1..4, then over images.
    image1 = 10 / 4 * math.exp(-(1**2) / (2 * 6.0**2)) * (2 / math.sqrt(6) + 1 / math.sqrt(2))
    image2 = 10 / 4 * 2
    assert scores["CIDEr"] == pytest.approx(100 * (image1 + image2) / 2)


@requires_java
def test_empty_prediction_scores_without_crashing():
    scores = _scores(["", "a dog on a sofa"], [["a dog on a sofa"], ["a dog on a sofa", "a dog lying"]])
    assert 0.0 < scores["BLEU-1"] < 100.0
    assert 0.0 <= scores["CIDEr"]


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_zero_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="no samples"):
        CaptionScores(meteor=False, spice=False).compute()


def test_bad_inputs_name_the_problem():
    metric = CaptionScores(meteor=False, spice=False)
    with pytest.raises(ValueError, match=r"targets\[1\] must be a non-empty list"):
        metric.update(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="2 predictions but 1 reference lists"):
        metric.update(["a", "b"], [["a"]])
    with pytest.raises(TypeError, match="not one string"):
        metric.update("a", [["a"]])


@requires_java
def test_merged_states_score_like_one_metric_over_all_data():
    preds = ["a dog runs on grass", "two cats sleep", "a red bus", "people walk in the rain"]
    refs = [["a dog running on the grass"], ["two cats sleeping", "cats asleep"], ["a red bus on a street"], ["rain"]]
    rank0, rank1, both = (CaptionScores(meteor=False, spice=False) for _ in range(3))
    rank0.update(preds[:3], refs[:3])
    rank1.update(preds[3:], refs[3:])
    both.update(preds, refs)
    rank1.merge_state(rank0)  # corpus-level BLEU and CIDEr's idf need the union, not per-rank averages
    assert rank1.compute() == pytest.approx(both.compute())
    assert rank0.compute()["CIDEr"] != pytest.approx(both.compute()["CIDEr"])


@requires_java
def test_tokenizer_matches_pycocoevalcap_and_keeps_lines_aligned():
    texts = ["A cat, on the mat.", "", 'Hello "world" -- (yes)!', "ünïcode café", "...", "It's a dog's life; isn't it?"]
    official = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert ptb_tokenize(texts) == [official[i][0] for i in range(len(texts))]
    # pycocoevalcap's wrapper would shift every later caption by one line here.
    assert ptb_tokenize(["x\ry", "next\u2028one", "last"]) == ["x y", "next one", "last"]


def test_spice_jar_detection(tmp_path):
    jars = spice_jars(tmp_path)
    assert [j.name for j in jars] == ["stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"]
    assert all(j.parent == tmp_path for j in jars)


@requires_java
def test_spice_without_jars_is_reported_unavailable_not_zero(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(captioning, "spice_jars", lambda: spice_jars(tmp_path))
    with caplog.at_level(logging.WARNING, logger=captioning.__name__):
        metric = CaptionScores(meteor=False)
    assert not metric.spice_available
    assert "SPICE is not scored" in caplog.text and "stanford-corenlp-3.6.0.jar" in metric.unavailable["SPICE"]
    metric.update(["a dog"], [["a dog"]])
    assert "SPICE" not in metric.compute()


@requires_java
def test_spice_failure_is_reported_not_raised(tmp_path, monkeypatch):
    for jar in spice_jars(tmp_path):
        jar.touch()
    monkeypatch.setattr(captioning, "spice_jars", lambda: spice_jars(tmp_path))

    def failing_spice(gts, res):
        raise subprocess.CalledProcessError(1, ["java", "-jar", "spice-1.0.jar"])

    monkeypatch.setattr(captioning, "_spice", failing_spice)
    metric = CaptionScores(meteor=False)
    assert metric.spice_available
    metric.update(["a dog"], [["a dog"]])
    assert "SPICE" not in metric.compute()
    assert "CalledProcessError" in metric.unavailable["SPICE"]


class _ReadOnlyMeteor:
    def __init__(self):
        raise PermissionError(13, "Permission denied", "/site-packages/pycocoevalcap/meteor")


class _CrashingMeteor:
    instances = []

    def __init__(self):
        self.lock = threading.Lock()
        self.instances.append(self)

    def compute_score(self, gts, res):
        self.lock.acquire()  # as pycocoevalcap's Meteor does, and then the JVM answers nothing
        return float(""), []


@requires_java
@pytest.mark.parametrize(("fake", "reason"), [(_ReadOnlyMeteor, "PermissionError"), (_CrashingMeteor, "ValueError")])
def test_meteor_failure_is_reported_not_raised(monkeypatch, fake, reason):
    monkeypatch.setattr(captioning, "Meteor", fake)
    metric = CaptionScores(spice=False)
    metric.update(["a dog"], [["a dog"]])
    scores = metric.compute()
    assert "METEOR" not in scores and "CIDEr" in scores
    assert reason in metric.unavailable["METEOR"]
    assert not any(m.lock.locked() for m in _CrashingMeteor.instances)  # else Meteor.__del__ would hang


@requires_java
def test_meteor_runs():  # starts METEOR's JVM: ~8 s
    metric = CaptionScores(spice=False)
    metric.update(
        ["a man riding a horse on the beach", "a bowl of soup"],
        [["a man rides a horse along the beach"], ["a plate of pasta with tomato sauce"]],
    )
    scores = metric.compute()
    assert list(scores) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    assert 0.0 < scores["METEOR"] < 100.0
    assert "METEOR" not in metric.unavailable
