"""Full-catalogue ranking of targets: one definition used by training, evaluation and replay.

The rank of a target is ``1 + #{items scoring strictly higher} + #{other items tying with it}``:
ties count against the target (pessimistic), so a constant model gets the worst rank, never a
lucky one. Items outside the catalogue (unknown at request time, padding, masked history items)
score -inf; a target at -inf ranks after every catalogue item. A model whose weights diverged
gets no credit from NaN scores either: NaN items count as scoring higher than the target, and a
target scored NaN gets the worst rank, V (before this rule an all-NaN model ranked every target
first, since no comparison with NaN is true).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG2 = math.log(2.0)


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """(B,) int64 1-based ranks of `targets` (B,) in `scores` (B, V).

    >>> s = torch.tensor([[float("-inf"), 0.5, 0.9, 0.5], [float("-inf"), 1.0, 1.0, 1.0]])
    >>> target_ranks(s, torch.tensor([1, 2])).tolist()
    [3, 3]
    >>> s[0, 3] = float("-inf")
    >>> target_ranks(s, torch.tensor([3, 1])).tolist()
    [3, 3]
    >>> nan = torch.full((1, 4), float("nan"))
    >>> target_ranks(nan, torch.tensor([2])).tolist()
    [4]
    """
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    higher = ((scores > target_scores) | torch.isnan(scores)).sum(dim=1)
    ties = (scores == target_scores).sum(dim=1) - 1  # minus the target itself
    t = target_scores[:, 0]
    ranks = 1 + higher + torch.where(t == float("-inf"), torch.zeros_like(ties), ties)
    return torch.where(torch.isnan(t), torch.full_like(ranks, scores.shape[1]), ranks)


def rank_metrics(ranks: Tensor) -> dict[str, Tensor]:
    """Per-event hit@10, hit@50, NDCG@10 and reciprocal rank cut at 10, from 1-based ranks."""
    r = ranks.to(torch.float64)
    in10 = ranks <= 10
    return {
        "hit10": in10,
        "hit50": ranks <= 50,
        "ndcg10": torch.where(in10, LOG2 / torch.log(r + 1.0), torch.zeros_like(r)),
        "rr10": torch.where(in10, 1.0 / r, torch.zeros_like(r)),
    }


def topk_entropy(scores: Tensor, k: int = 10) -> Tensor:
    """(B,) entropy of the softmax restricted to each row's top-k items, renormalised (ETA-Rec)."""
    top = scores.topk(k, dim=1).values  # (B, k)
    p = torch.softmax(top, dim=1)
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=1)


def gini(counts: Tensor) -> float:
    """Gini coefficient of non-negative counts (0: all equal; → 1: all mass on one entry).

    Over the whole catalogue, items never recommended included, as in recommendation-diversity
    reporting (docs/protocol.md): with sorted counts c_1 <= ... <= c_n,
    G = Σ (2i − n − 1) c_i / (n Σ c_i). No counts: 0.
    """
    c = torch.sort(counts.to(torch.float64)).values
    n, total = c.numel(), float(c.sum())
    if n == 0 or total == 0:
        return 0.0
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * c).sum() / (n * total))


def marginal_entropy(items: Tensor) -> float:
    """Entropy (nats) of the empirical distribution of `items` (a batch's top-1 predictions:
    ASR's collapse signal; 0 when every request gets the same item)."""
    _, counts = torch.unique(items, return_counts=True)
    p = counts.to(torch.float64) / counts.sum()
    return float(-(p * torch.log(p)).sum())
