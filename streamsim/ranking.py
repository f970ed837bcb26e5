"""Full-catalogue ranking of targets: one definition used by training, evaluation and replay.

The rank of a target is ``1 + #{items scoring strictly higher} + #{other items tying with it}``:
ties count against the target (pessimistic), so a constant model gets the worst rank, never a
lucky one. Items outside the catalogue (unknown at request time, padding, masked history items)
score -inf; a target at -inf ranks after every catalogue item.
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
    """
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    higher = (scores > target_scores).sum(dim=1)
    ties = (scores == target_scores).sum(dim=1) - 1  # minus the target itself
    finite = torch.isfinite(target_scores[:, 0])
    return 1 + higher + torch.where(finite, ties, torch.zeros_like(ties))


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
