"""The forgetting probe's summary: paired mean difference against θ₀ and its standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamsim.probe import ProbeScore


def test_forgetting_is_the_paired_mean_with_its_standard_error() -> None:
    base = ProbeScore(np.array([1.0, 0.5, 0.0, 0.25]), np.array([True, True, False, True]))
    now = ProbeScore(np.array([0.5, 0.5, 0.0, 0.0]), np.array([True, True, False, False]))
    s = now.summary(base)
    diff = np.array([0.5, 0.0, 0.0, 0.25])
    assert s["ndcg10"] == pytest.approx(0.25)
    assert s["hr10"] == pytest.approx(0.5)
    assert s["forgetting"] == pytest.approx(diff.mean())
    assert s["forgetting_se"] == pytest.approx(diff.std(ddof=1) / 2.0)
    same = base.summary(base)
    assert (same["forgetting"], same["forgetting_se"]) == (0.0, 0.0)
    assert "forgetting" not in base.summary()
    single = ProbeScore(np.array([0.3]), np.array([True]))
    assert math.isnan(single.summary(single)["forgetting_se"])
