"""Leave-one-out evaluation (RecBole LS protocol) with and without test-time alignment."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from streamsim.leave_one_out import default_tta, evaluate_loo, loo_examples
from streamsim.store import connect_memory, write_dataset
from streamsim.train import ModelSpec, TrainSpec
from tests.support.tiny_scenario import TINY_T2AREC
from tests.support.toy import store_toy


def small_store():  # type: ignore[no-untyped-def]
    """Users with 1, 2, 3 and 5 events, in interleaved time order."""
    rows = [(0, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 4), (3, 5), (3, 1), (3, 2), (3, 3)]
    con = connect_memory()
    events = pa.table(
        {
            "idx": np.arange(len(rows), dtype=np.int64),
            "user_id": np.array([u for u, _ in rows], dtype=np.int32),
            "item_id": np.array([i for _, i in rows], dtype=np.int32),
            "ts": np.arange(len(rows), dtype=np.int64) * 100,
        }
    )
    users = pa.table({"user_id": np.arange(4, dtype=np.int32), "raw": list("abcd")})
    items = pa.table({"item_id": np.arange(1, 6, dtype=np.int32), "raw": list("vwxyz")})
    write_dataset(con, "s", events=events, users=users, items=items, source="t", format="t")
    return con


def test_loo_split_follows_recbole_leave_one_out() -> None:
    data = loo_examples(small_store(), "s", max_len=3)
    # user 0: no example; user 1: one example -> train; user 2: two -> train + test;
    # user 3: four -> two train, valid, test
    assert len(data.test) == 2
    assert len(data.valid) == 1
    assert len(data.train) == 1 + 1 + 2
    assert data.test.targets.tolist() == [3, 3]
    # user 3's test input holds the validation item (2) as its most recent item
    row = int(np.flatnonzero(data.test.lengths == 3)[0])
    assert data.test.items[row].tolist() == [5, 1, 2]
    assert data.valid.items[0].tolist() == [4, 5, 1]


def test_loo_metrics_are_bounded_and_tta_restores_the_model() -> None:
    con = connect_memory()
    store_toy(con, n_events=600, n_users=30, n_items=25)
    spec = ModelSpec(name="t2arec", config=TINY_T2AREC)
    result = evaluate_loo(
        con,
        "toy",
        spec,
        TrainSpec(epochs=1, batch_size=64),
        seed=0,
        tta=default_tta(),
        eval_batch_size=16,
    )
    for part in ("test", "test_tta"):
        metrics = result[part]
        assert isinstance(metrics, dict)
        assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= metrics["recall@50"] <= 1.0
        assert metrics["mrr@10"] <= metrics["ndcg@10"] + 1e-12
    assert result["n_test"] == 30
    history = result["history"]
    assert isinstance(history, list)
    assert len(history) == result["epochs"] == 1
    valid = result["valid"]
    assert isinstance(valid, dict)
    assert valid["ndcg@10"] == history[0]["valid.ndcg@10"]  # the kept (only) epoch
    assert history[0]["train.state"] > 0  # T2ARec logs its loss terms per epoch


def test_loo_refuses_tta_for_models_without_a_test_time_loss() -> None:
    pytest.importorskip("models.sasrec")
    con = connect_memory()
    store_toy(con, n_events=300, n_users=20, n_items=15)
    spec = ModelSpec(name="sasrec", config=(("max_len", 8),))
    from streamsim.errors import ModelError

    with pytest.raises(ModelError, match="no test-time loss"):
        evaluate_loo(
            con, "toy", spec, TrainSpec(epochs=1, batch_size=64), seed=0, tta=default_tta()
        )


def test_tta_evaluation_adapts_each_batch_and_restores_every_weight() -> None:
    import torch

    from streamsim.adapt import PolicySpec
    from streamsim.leave_one_out import full_ranking_metrics, loo_examples
    from streamsim.train import build_model

    con = connect_memory()
    store_toy(con, n_events=600, n_users=30, n_items=25)
    model = build_model(ModelSpec(name="t2arec", config=TINY_T2AREC), n_items=25, seed=0)
    data = loo_examples(con, "toy", max_len=model.max_len)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = full_ranking_metrics(model, data.test, batch_size=8)
    strong = PolicySpec(name="loo-tta", tta="reset", tta_lr=5.0)  # a step big enough to matter
    adapted = full_ranking_metrics(model, data.test, batch_size=8, tta=strong)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert adapted != plain  # the step changed the scores of at least one batch
    assert full_ranking_metrics(model, data.test, batch_size=8) == plain  # nothing carried over
