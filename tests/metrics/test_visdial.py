import pytest
import torch

from lightning_ssd.metrics import VisDialRanking
from lightning_ssd.metrics.visdial import gt_ranks


def test_hand_made_score_matrix():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.3],  # gt 0 -> rank 1
            [0.9, 0.1, 0.5, 0.3],  # gt 3 -> rank 3 (0.9, 0.5 above)
            [0.2, 0.4, 0.6, 0.8],  # gt 0 -> rank 4
            [0.0, 1.0, 0.0, 0.0],  # gt 1 -> rank 1
        ]
    )
    gt = torch.tensor([0, 3, 0, 1])
    assert gt_ranks(scores, gt).tolist() == [1, 3, 4, 1]
    metric = VisDialRanking()
    metric.update(scores, gt)
    result = {k: v.item() for k, v in metric.compute().items()}
    assert result["MRR"] == pytest.approx(100 * (1 + 1 / 3 + 1 / 4 + 1) / 4)
    assert result["R@1"] == pytest.approx(50.0)
    assert result["R@5"] == result["R@10"] == pytest.approx(100.0)
    assert result["mean_rank"] == pytest.approx((1 + 3 + 4 + 1) / 4)


def test_ties_rank_like_a_stable_descending_sort():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1]])
    # 0.9 is above every 0.5; among the tied 0.5s the lower index comes first.
    assert [gt_ranks(scores, torch.tensor([i])).item() for i in range(5)] == [2, 1, 3, 4, 5]
    stable = torch.sort(scores, descending=True, stable=True).indices[0].tolist()
    assert [stable.index(i) + 1 for i in range(5)] == [2, 1, 3, 4, 5]


def test_rounds_are_flattened_and_recall_at_10_needs_100_candidates():
    torch.manual_seed(0)
    scores = torch.randn(2, 10, 100)  # (B, rounds, candidates)
    gt = torch.randint(0, 100, (2, 10))
    metric = VisDialRanking()
    metric.update(scores, gt)
    ranks = gt_ranks(scores.flatten(0, 1), gt.flatten()).double()
    result = metric.compute()
    assert result["MRR"].item() == pytest.approx(100 * (1 / ranks).mean().item(), rel=1e-6)
    assert result["R@10"].item() == pytest.approx(100 * (ranks <= 10).double().mean().item())
    assert result["mean_rank"].item() == pytest.approx(ranks.mean().item())


def test_merge_state_matches_one_metric_over_all_data():
    torch.manual_seed(1)
    scores, gt = torch.randn(6, 100), torch.randint(0, 100, (6,))
    rank0, rank1, both = VisDialRanking(), VisDialRanking(), VisDialRanking()
    rank0.update(scores[:4], gt[:4])
    rank1.update(scores[4:], gt[4:])
    both.update(scores, gt)
    rank0.merge_state(rank1)
    merged, single = rank0.compute(), both.compute()
    assert all(torch.allclose(merged[k], single[k]) for k in single)


@pytest.mark.parametrize(
    ("scores", "gt", "match"),
    [
        (torch.zeros(2, 100), torch.zeros(3, dtype=torch.long), "leading shape"),
        (torch.zeros(2, 100), torch.tensor([0, 100]), r"\[0, 100\)"),
        (torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), "NaN"),
    ],
)
def test_bad_inputs_name_the_problem(scores, gt, match):
    with pytest.raises(ValueError, match=match):
        VisDialRanking().update(scores, gt)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_compute_without_samples_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        VisDialRanking().compute()


def test_answer_match_scores_rank_the_written_answer_first():
    from lightning_ssd.metrics.visdial import answer_match_scores, gt_ranks

    candidates = [["blue", "it is red", "red", "they are red"], ["yes", "no", "two", "there are two"]]
    scores = answer_match_scores(["red", "there are two"], candidates)
    assert scores.shape == (2, 4)
    assert scores[0].tolist() == [0.0, 0.5, 2.0, 0.5]  # exact match 2, token F1 otherwise
    assert gt_ranks(scores, torch.tensor([2, 3])).tolist() == [1, 1]
    assert gt_ranks(scores, torch.tensor([1, 2])).tolist() == [2, 2]  # ties: the lower index first
