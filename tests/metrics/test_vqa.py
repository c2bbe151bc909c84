import pytest

from lightning_ssd.metrics import ExactMatch, VQAAccuracy, normalize_vqa_answer, vqa_accuracy


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two", "2"),  # number words become digits
        ("none", "0"),
        ("ten dogs", "10 dogs"),
        ("The Dog", "dog"),  # lower case, articles dropped
        ("a man and an apple", "man and apple"),
        ("dont", "don't"),  # contractions get their apostrophe back
        ("isnt it", "isn't it"),
        ("couldnt've", "couldn't ve"),  # the apostrophe splits the word before the table is looked up
        ("twas", "'twas"),
        ("yes.", "yes"),  # a period goes unless a digit follows
        ("3.5", "3.5"),
        ("1.", "1"),
        ("yes/no", "yes no"),  # punctuation inside a word becomes a space...
        ("hello, world", "hello world"),  # ...and is deleted next to a space
        ("1,000", "1000"),  # digit-comma-digit in the text: all punctuation is deleted
        ("(red)", "red"),
        ("don't", "don t"),  # the apostrophe is punctuation too, as in the official script
        ("  multiple\tspaces\nhere ", "multiple spaces here"),
        ("stop!", "stop!"),  # "!" is not in the official punctuation list
    ],
)
def test_official_normalisation(raw, normalised):
    assert normalize_vqa_answer(raw) == normalised


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_accuracy_averages_over_the_ten_leave_one_out_subsets(matches, expected):
    answers = ["2"] * matches + ["3"] * (10 - matches)
    # By hand: leaving out one of the k matching answers leaves k - 1 matches among the other 9, leaving out
    # one of the 10 - k others leaves k; each subset scores min(matches / 3, 1).
    by_hand = (matches * min((matches - 1) / 3, 1) + (10 - matches) * min(matches / 3, 1)) / 10 if matches else 0.0
    assert vqa_accuracy("two", answers) == pytest.approx(by_hand) == pytest.approx(expected)


def test_metric_is_the_mean_percentage_and_normalises_both_sides():
    metric = VQAAccuracy()
    metric.update(["Two.", "a red car"], [["2"] * 3 + ["3"] * 7, ["Red Car"] * 10])
    metric.update(["blue"], [["green"] * 10])
    assert metric.compute().item() == pytest.approx(100 * (0.9 + 1.0 + 0.0) / 3)


def test_merge_state_matches_one_metric_over_all_data():
    preds = ["yes", "no", "2", "cat"]
    targets = [["yes"] * 10, ["yes"] * 8 + ["no"] * 2, ["2"] * 1 + ["3"] * 9, ["dog"] * 10]
    rank0, rank1, both = VQAAccuracy(), VQAAccuracy(), VQAAccuracy()
    rank0.update(preds[:3], targets[:3])
    rank1.update(preds[3:], targets[3:])
    both.update(preds, targets)
    rank0.merge_state(rank1)
    assert rank0.compute().item() == pytest.approx(both.compute().item())


def test_exact_match():
    metric = ExactMatch()
    metric.update(["The red one.", "Three", "blue"], ["red one", "3", "green"])
    assert metric.compute().item() == pytest.approx(200 / 3)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
@pytest.mark.parametrize("metric_cls", [VQAAccuracy, ExactMatch])
def test_empty_inputs(metric_cls):
    metric = metric_cls()
    metric.update([], [])
    with pytest.raises(ValueError, match="no samples"):
        metric.compute()


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        VQAAccuracy().update(["a", "b"], [["a"] * 10])
    with pytest.raises(TypeError, match="not one string"):
        ExactMatch().update("yes", "yes")
    with pytest.raises(ValueError, match="at least one reference"):
        VQAAccuracy().update(["a"], [[]])
