"""Training health: each statistic on constructed inputs, the verdict, and the monitor in `_fit`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import models
from streamsim import health
from streamsim.train import ModelSpec, TrainSpec, _fit, build_model
from streamsim.training_examples import Examples, evaluate_examples, stack_examples

# ---- statistics on constructed inputs --------------------------------------------------------


def test_rank1_r2_is_one_for_a_rank1_matrix_and_ignores_row_shifts() -> None:
    g = torch.Generator().manual_seed(0)
    u, v = torch.rand(30, 1, generator=g) + 0.5, torch.randn(1, 50, generator=g)
    assert health.rank1_r2(u @ v) == pytest.approx(1.0)
    shifted = u @ v + torch.randn(30, 1, generator=g) * 100  # per-user constants: same ranks
    assert health.rank1_r2(shifted) == pytest.approx(1.0)
    assert health.rank1_r2((u @ v).T) == pytest.approx(1.0)  # tall or wide


def test_rank1_r2_of_orthogonal_equal_components_is_one_over_their_number() -> None:
    k, n = 4, 40
    basis = torch.linalg.qr(torch.randn(n, k, generator=torch.Generator().manual_seed(1)))[0]
    basis = basis - basis.mean(dim=0, keepdim=True)  # centred rows keep them orthogonal…
    basis = torch.linalg.qr(basis)[0]  # …after re-orthogonalising
    scores = torch.eye(k) @ basis.T * 3.0  # k users, each one unit component
    assert health.rank1_r2(scores) == pytest.approx(1 / k, rel=1e-6)


def test_shared_energy_of_identical_orthogonal_and_offset_rows() -> None:
    same = torch.ones(10, 4) * torch.tensor([1.0, -2.0, 0.5, 3.0])
    assert health.shared_energy(same) == pytest.approx(1.0)
    signs = torch.cat([torch.eye(4), -torch.eye(4)])  # mean 0: nothing shared
    assert health.shared_energy(signs) == pytest.approx(0.0)
    offset = signs + torch.tensor([1.0, 0.0, 0.0, 0.0])  # shared ‖(1,0,0,0)‖² = 1, total 2
    assert health.shared_energy(offset) == pytest.approx(0.5)


def test_popularity_correlation_is_spearman_of_the_mean_centred_scores() -> None:
    counts = torch.tensor([5, 50, 1, 20, 20])
    scores = torch.log(counts.double())[None, :].repeat(3, 1) + torch.tensor([[0.0], [7], [-3]])
    assert health.popularity_correlation(scores, counts) == pytest.approx(1.0)
    assert health.popularity_correlation(-scores, counts) == pytest.approx(-1.0)
    ranks = [2.0, 5.0, 1.0, 3.5, 3.5]  # counts' ties share their average rank
    other = torch.tensor([[3.0, 1.0, 2.0, 5.0, 4.0]])
    a, b = np.array(ranks), np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    want = np.corrcoef(a, b)[0, 1]
    assert health.popularity_correlation(other, counts) == pytest.approx(want)


def test_top1_per_1000_counts_distinct_argmax_columns() -> None:
    scores = torch.zeros(500, 6)
    scores[:250, 2] = 1.0
    scores[250:, 4] = 1.0
    assert health.top1_per_1000(scores) == pytest.approx(4.0)  # 2 items per 500 requests
    assert health.top1_per_1000(torch.eye(8)) == pytest.approx(1000.0)
    assert math.isnan(health.top1_per_1000(torch.zeros(0, 3)))


def test_delta_ratio_is_a_ratio_of_medians() -> None:
    assert health.delta_ratio(torch.tensor([1.0, 2.0, 30.0]), torch.tensor([0.1, 0.2, 9.0])) == (
        pytest.approx(10.0)
    )
    assert math.isnan(health.delta_ratio(torch.zeros(0), torch.tensor([0.1])))


# ---- verdict --------------------------------------------------------------------------------


def _record(**values: float) -> dict[str, float]:
    healthy = {
        "rank1_r2": 0.3,
        "shared_energy": 0.05,
        "top1_per_1000": 200.0,
        "popularity_ndcg@10": 0.02,
        "delta_ratio": 0.9,
        "state_norm_ratio": 1.2,
    }
    healthy.update(values)
    ndcg = healthy.pop("valid_ndcg", 0.06)
    return {"valid.ndcg@10": ndcg, **{f"health.{k}": v for k, v in healthy.items()}}


@pytest.mark.parametrize(
    ("values", "flag", "words"),
    [
        ({}, None, None),
        ({"rank1_r2": 0.99}, "collapsing", "one score vector explains 99%"),
        ({"shared_energy": 0.84}, "collapsing", "84% of the representation's energy"),
        ({"valid_ndcg": 0.021}, "at_popularity_level", "NDCG@10 0.021 vs 0.020"),
        ({"valid_ndcg": 0.015}, "at_popularity_level", "is below popularity level"),
        ({"delta_ratio": 150.0}, "degenerate_alignment", "inflating the re-fed step"),
        ({"delta_ratio": 1e-4}, "degenerate_alignment", "shrinking the re-fed step"),
        ({"state_norm_ratio": 0.05}, "degenerate_alignment", "switched its state off"),
    ],
)
def test_verdict_flags_and_words(values: dict[str, float], flag: str | None, words: str) -> None:
    record = _record(**values)
    v = health.verdict(record)
    raised = {f for f in ("collapsing", "at_popularity_level", "degenerate_alignment")
              if getattr(v, f)}  # fmt: skip
    assert raised == ({flag} if flag else set())
    line = health.warning_line(record, "t2arec")
    if flag is None:
        assert line is None
        assert v.healthy
    else:
        assert line is not None
        assert line.startswith("warning: t2arec ")
        assert words in line
    assert health.flags(record)[f"health.{flag or 'collapsing'}"] == float(flag is not None)
    summary = health.summary_line(record)
    assert summary is not None
    assert summary.startswith("health: rank-1 R² ")
    assert ("flags: " in summary) == (flag is not None)
    if flag is not None:
        assert flag.replace("_", " ") in summary


def test_unmeasured_records_give_no_warning_and_unknown_flags() -> None:
    assert health.warning_line({"valid.ndcg@10": 0.01}, "t2arec") is None
    assert health.manifest_entry({"valid.ndcg@10": 0.01}, "t2arec")["collapsing"] is None
    assert health.summary_line({"valid.ndcg@10": 0.01}) is None
    entry = health.manifest_entry(_record(rank1_r2=0.95), "sasrec")
    assert entry["collapsing"] is True
    assert str(entry["warning"]).startswith("warning: sasrec is collapsing")


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="`rank1_r2` and `shared_energy` must be in"):
        health.Thresholds(rank1_r2=1.5)
    with pytest.raises(ValueError, match="`delta_ratio` > 1"):
        health.Thresholds(delta_ratio=0.5)


# ---- the monitor inside training -------------------------------------------------------------


def chain_log(
    *, n_users: int = 300, n_items: int = 80, events: int = 24, max_len: int = 20, seed: int = 0
) -> tuple[Examples, Examples]:
    """Leave-last-out examples of a log where popularity is a poor predictor.

    Items follow a fixed random successor table with probability 0.9 (else uniform), so every
    item is about equally popular and the next item is set by the last one; gaps are 1 to 600
    minutes. The last event of each user is the validation target.
    """
    rng = np.random.default_rng(seed)
    successor = rng.permutation(n_items) + 1
    parts: dict[str, dict[str, list[Any]]] = {
        k: {"items": [], "times": [], "len": [], "req": [], "tgt": []} for k in ("train", "valid")
    }
    for _ in range(n_users):
        seq = [int(rng.integers(1, n_items + 1))]
        for _ in range(events - 1):
            follow = rng.random() < 0.9
            seq.append(int(successor[seq[-1] - 1]) if follow else int(rng.integers(1, n_items + 1)))
        gaps = rng.integers(1, 600, size=events) * 60
        times = 1_600_000_000 + int(rng.integers(0, 86_400)) + np.cumsum(gaps)
        for k in range(1, events):
            rows = parts["valid" if k == events - 1 else "train"]
            start = max(0, k - max_len)
            items, ts = np.zeros(max_len, np.int64), np.zeros(max_len, np.int64)
            items[: k - start], ts[: k - start] = seq[start:k], times[start:k]
            rows["items"].append(items)
            rows["times"].append(ts)
            rows["len"].append(np.int64(k - start))
            rows["req"].append(np.int64(times[k]))
            rows["tgt"].append(np.int64(seq[k]))
    known = np.ones(n_items + 1, dtype=bool)
    return stack_examples(parts["train"], max_len, known), stack_examples(parts["valid"], max_len,
                                                                          known)  # fmt: skip


def test_monitor_reports_popularity_ndcg_of_the_popularity_model() -> None:
    train_ex, valid_ex = chain_log(n_users=60, events=12)
    model = build_model(ModelSpec(name="gru4rec"), n_items=80, seed=0)
    monitor = health.Monitor(model, train_ex, valid_ex, batch_size=64)
    pop = models.create("popularity", n_items=80)
    for batch in train_ex.batches(4096):
        pop.observe(batch)
    want = evaluate_examples(pop, valid_ex, batch_size=64)["ndcg@10"]
    assert monitor.popularity_ndcg == pytest.approx(want)
    record = monitor.check(model, {"ndcg@10": 0.5})
    assert "health.delta_ratio" not in record  # not a T2ARec: only the generic statistics
    assert 0 <= record["health.rank1_r2"] <= 1
    assert record["health.at_popularity_level"] == 0.0


T2AREC_TINY = {"max_len": 20, "d_model": 32, "d_state": 16, "chunk": 20, "time_block": 21}


def _train(config: dict[str, Any], epochs: int) -> list[dict[str, float]]:
    train_ex, valid_ex = chain_log()
    spec = ModelSpec(name="t2arec", config=tuple(sorted({**T2AREC_TINY, **config}.items())))
    model = build_model(spec, n_items=80, seed=0)
    train_spec = TrainSpec(epochs=epochs, batch_size=64, lr=3e-3, patience=epochs)
    return _fit(model, train_ex, valid_ex, train_spec, seed=0, progress=None)


LITERAL = {"state_loss": "dilution", "state_delta": "live", "state_target": "live",
           "time_scale": "fixed", "mu_state_train": 1.0}  # fmt: skip


@pytest.mark.usefixtures("one_thread")
def test_health_flags_the_literal_reading_and_passes_the_default() -> None:
    """~400 steps each (103 per epoch) on a log where popularity is a poor predictor: the
    paper's literal L_state collapses T2ARec to one list at popularity level, the default
    T2ARec does not."""
    literal = _train(LITERAL, epochs=4)[-1]
    v = health.verdict(literal)
    assert v.collapsing
    assert v.at_popularity_level
    assert literal["health.delta_ratio"] > 10  # Δ_{n+1} inflated
    assert literal["health.at_popularity_level"] == 1.0  # the flag is in the history

    default = _train({}, epochs=4)[-1]
    assert health.verdict(default).healthy, health.warning_line(default, "t2arec")
    assert default["valid.ndcg@10"] > 3 * default["health.popularity_ndcg@10"]
