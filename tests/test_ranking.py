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
