"""The forgetting probe's summary: paired mean difference against θ₀ and its standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamsim.probe import ProbeScore


def test_forgetting_is_the_paired_mean_with_its_standard_error() -> None:
    base = ProbeScore(
        np.array([1.0, 0.5, 0.0, 0.25]), np.array([True, True, False, True]), np.array([3, 4, 5, 6])
    )
    now = ProbeScore(
        np.array([0.5, 0.5, 0.0, 0.0]), np.array([True, True, False, False]), np.array([3, 9, 5, 1])
    )
    s = now.summary(base)
    diff = np.array([0.5, 0.0, 0.0, 0.25])
    assert s["ndcg10"] == pytest.approx(0.25)
    assert s["hr10"] == pytest.approx(0.5)
    assert s["forgetting"] == pytest.approx(diff.mean())
    assert s["forgetting_se"] == pytest.approx(diff.std(ddof=1) / 2.0)
    assert s["top1_flip"] == pytest.approx(0.5)  # requests 2 and 4 got another top-1 item
    same = base.summary(base)
    assert (same["forgetting"], same["forgetting_se"], same["top1_flip"]) == (0.0, 0.0, 0.0)
    assert "forgetting" not in base.summary()
    single = ProbeScore(np.array([0.3]), np.array([True]), np.array([2]))
    assert math.isnan(single.summary(single)["forgetting_se"])
