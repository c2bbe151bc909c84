"""VisDial retrieval metrics from candidate scores: MRR, R@1, R@5, R@10 and mean rank."""

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

RECALL_AT = (1, 5, 10)


def gt_ranks(scores: Tensor, gt_index: Tensor) -> Tensor:
    """1-based rank of the ground-truth candidate when candidates are sorted by descending score.

    As in the official VisDial evaluation (a descending sort of the scores). Ties, which the official code
    leaves to an unstable sort, are broken by candidate index as a stable sort would: the gt ranks after
    every candidate with a higher score and after tied candidates with a lower index.

    Args:
        scores: (..., C) score of each candidate answer.
        gt_index: (...) index of the ground-truth answer among the C candidates.

    Returns:
        (...) int64 ranks in [1, C].
    """
    gt_score = scores.gather(-1, gt_index.unsqueeze(-1))  # (..., 1)
    before = torch.arange(scores.shape[-1], device=scores.device) < gt_index.unsqueeze(-1)  # (..., C)
    return 1 + (scores > gt_score).sum(-1) + ((scores == gt_score) & before).sum(-1)


class VisDialRanking(Metric):
    """Sparse-annotation VisDial metrics: MRR, R@1, R@5, R@10 (percentages) and mean rank (1 = best).

    ``update`` takes the scores of the candidate answers (100 in VisDial) for each question and the index
    of the ground-truth answer; leading dimensions (batch, dialogue round) are flattened. The states are
    sums, reduced with ``sum`` under DDP. NDCG, which needs the dense relevance annotations, is not included.

    Example:
        >>> metric = VisDialRanking()
        >>> metric.update(torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]]), torch.tensor([2, 0]))
        >>> {k: round(v.item(), 2) for k, v in metric.compute().items()}
        {'MRR': 75.0, 'R@1': 50.0, 'R@5': 100.0, 'R@10': 100.0, 'mean_rank': 1.5}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("reciprocal_rank_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("rank_sum", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("hits", default=torch.zeros(len(RECALL_AT), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, gt_index: Tensor) -> None:
        """Adds (..., C) candidate scores and the (...) ground-truth indices."""
        if scores.ndim < 1 or scores.shape[:-1] != gt_index.shape:
            raise ValueError(
                f"VisDialRanking.update: scores must be (..., num_candidates) and gt_index its leading shape; "
                f"got scores {tuple(scores.shape)} and gt_index {tuple(gt_index.shape)}"
            )
        if gt_index.numel() and (gt_index.min() < 0 or gt_index.max() >= scores.shape[-1]):
            raise ValueError(
                f"VisDialRanking.update: gt_index must be in [0, {scores.shape[-1]}), "
                f"got values from {int(gt_index.min())} to {int(gt_index.max())}"
            )
        if torch.isnan(scores).any():
            raise ValueError("VisDialRanking.update: scores contain NaN, which has no rank")
        ranks = gt_ranks(scores.detach(), gt_index.long()).flatten()
        self.reciprocal_rank_sum += (1.0 / ranks.double()).sum()
        self.rank_sum += ranks.sum()
        self.hits += torch.stack([(ranks <= k).sum() for k in RECALL_AT])
        self.total += ranks.numel()

    def compute(self) -> dict[str, Tensor]:
        """Returns ``MRR``, ``R@1``, ``R@5``, ``R@10`` (x100) and ``mean_rank``."""
        if self.total == 0:
            raise ValueError("VisDialRanking.compute: no samples; call update() first")
        result = {"MRR": 100.0 * self.reciprocal_rank_sum / self.total}
        result.update({f"R@{k}": 100.0 * hits / self.total for k, hits in zip(RECALL_AT, self.hits, strict=True)})
        result["mean_rank"] = self.rank_sum / self.total
        return {name: value.float() for name, value in result.items()}


def answer_match_scores(answers: list[str], candidates: list[list[str]]) -> Tensor:
    """(B, C) scores of each row's candidates against a generated answer, for ranking by what a decoder wrote.

    A candidate equal to the answer (whitespace-normalised) scores 2; every other candidate its token F1 with the
    answer (0..1), so the exact answer ranks first and near answers ("it is red" for "red") next. A decoder that
    never scores the candidates itself (greedy decoding, SSD, a draft) is ranked this way; a decoder whose output
    equals the full model's gets the full model's ranks.
    """
    rows = []
    for answer, options in zip(answers, candidates, strict=True):
        words = answer.split()
        row = []
        for option in options:
            other = option.split()
            if other == words:
                row.append(2.0)
                continue
            common = sum(min(words.count(w), other.count(w)) for w in set(words))
            row.append(0.0 if common == 0 else 2 * common / (len(words) + len(other)))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)
