"""Recommendation-diversity diagnostics recorded per micro-batch: Gini and top-1 entropy."""

from __future__ import annotations

import math

import pytest
import torch

from streamsim.ranking import gini, marginal_entropy


def test_gini_of_equal_and_concentrated_counts() -> None:
    assert gini(torch.tensor([3, 3, 3, 3])) == 0.0
    # all mass on one of n items: (n - 1) / n
    assert gini(torch.tensor([0, 0, 0, 8])) == pytest.approx(3 / 4)
    assert gini(torch.tensor([8, 0, 0, 0])) == pytest.approx(3 / 4)  # order does not matter
    # against the mean-absolute-difference definition  Σ_ij |c_i − c_j| / (2 n² mean)
    c = torch.tensor([1.0, 2.0, 0.0, 7.0, 3.0])
    mad = (c[:, None] - c[None, :]).abs().sum() / (2 * len(c) ** 2 * c.mean())
    assert gini(c) == pytest.approx(float(mad))
    assert gini(torch.zeros(4)) == 0.0
    assert gini(torch.zeros(0)) == 0.0


def test_marginal_entropy_of_top1_predictions() -> None:
    assert marginal_entropy(torch.tensor([5, 5, 5])) == 0.0
    assert marginal_entropy(torch.tensor([1, 2, 3, 4])) == pytest.approx(math.log(4))
    assert marginal_entropy(torch.tensor([1, 1, 2, 2])) == pytest.approx(math.log(2))


def test_diverged_scores_earn_no_rank() -> None:
    """NaN scores never help the target: an all-NaN model gets the worst rank everywhere, a NaN
    item counts as scoring higher, and +inf ties count against a +inf target."""
    from streamsim.ranking import target_ranks

    nan, inf = float("nan"), float("inf")
    all_nan = torch.full((3, 5), nan)
    assert target_ranks(all_nan, torch.tensor([1, 2, 4])).tolist() == [5, 5, 5]
    some_nan = torch.tensor([[-inf, 0.9, nan, 0.1, nan]])
    assert target_ranks(some_nan, torch.tensor([1])).tolist() == [3]  # behind the two NaN items
    assert target_ranks(some_nan, torch.tensor([2])).tolist() == [5]  # a NaN target: last
    overflow = torch.tensor([[-inf, inf, inf, 0.0]])
    assert target_ranks(overflow, torch.tensor([1])).tolist() == [2]  # tie with the other +inf
    cold = torch.tensor([[-inf, 0.3, 0.2, -inf]])
    assert target_ranks(cold, torch.tensor([3])).tolist() == [3]  # after the catalogue items
