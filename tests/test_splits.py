"""k-core / min-count filtering on a period, split cold-start report, RecBole leave-one-out."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from streamsim.leave_one_out import loo_examples
from streamsim.splits import (
    IndexRange,
    Split,
    filter_events,
    kcore,
    leave_one_out,
    split_report,
)
from streamsim.store import connect_memory, write_dataset

# (user, item) in replay order; ts = 10 * idx
EVENTS = [(0, 1), (0, 2), (1, 1), (1, 2), (2, 3), (0, 1), (1, 3), (3, 4), (2, 1), (3, 1)]


def store(rows: list[tuple[int, int]] = EVENTS) -> duckdb.DuckDBPyConnection:
    con = connect_memory()
    n = len(rows)
    users = sorted({u for u, _ in rows})
    items = sorted({i for _, i in rows})
    write_dataset(
        con,
        "d",
        events=pa.table(
            {
                "idx": np.arange(n),
                "user_id": np.array([u for u, _ in rows], dtype=np.int32),
                "item_id": np.array([i for _, i in rows], dtype=np.int32),
                "ts": np.arange(n, dtype=np.int64) * 10,
            }
        ),
        users=pa.table({"user_id": pa.array(users, pa.int32()), "raw": [str(u) for u in users]}),
        items=pa.table({"item_id": pa.array(items, pa.int32()), "raw": [str(i) for i in items]}),
        source="t",
        format="t",
    )
    return con


def test_kcore_iterates_until_stable_on_the_period() -> None:
    con = store()
    # on idx 0..6: user counts 0:3 1:3 2:1; item counts 1:3 2:2 3:2
    period = IndexRange(0, 7, 0, 70)
    kept = kcore(con, "d", min_user=2, min_item=2, period=period)
    # round 1 drops user 2 (1 event) -> item 3 left with 1 event -> dropped in round 2
    assert kept.users.to_pylist() == [0, 1]
    assert kept.items.to_pylist() == [1, 2]
    assert kept.n_events == 5
    assert kept.rounds == 3
    once = kcore(con, "d", min_user=2, min_item=2, period=period, iterate=False)
    assert once.items.to_pylist() == [1, 2, 3]
    assert once.n_events == 6
    # the whole log: user 2 has 2 events there, so it survives; item 4 (once) takes user 3 along
    full = kcore(con, "d", min_user=2, min_item=2)
    assert full.users.to_pylist() == [0, 1, 2]
    assert full.items.to_pylist() == [1, 2, 3]
    events = filter_events(con, "d", kept, period=period)
    assert events.column("idx").to_pylist() == [0, 1, 2, 3, 5]
    assert filter_events(con, "d", kept).column("idx").to_pylist() == [0, 1, 2, 3, 5]
    with pytest.raises(ValueError, match="minimum counts must be >= 1"):
        kcore(con, "d", min_user=0, min_item=1)


def test_split_report_counts_cold_events() -> None:
    con = store()
    split = Split(
        pretrain=IndexRange(0, 4, 0, 40),
        valid=IndexRange(4, 5, 40, 50),
        replay=IndexRange(5, 10, 50, 100),
    )
    report = split_report(con, "d", split)
    # before the cut: users {0,1,2}, items {1,2,3}; replay: (0,1) (1,3) (3,4) (2,1) (3,1)
    assert report == {
        "replay_events": 5,
        "events_unseen_user": 2,
        "events_unseen_item": 1,
        "events_unseen_user_or_item": 2,
        "unseen_users": 1,
        "unseen_items": 1,
    }


def test_leave_one_out_recbole_rule() -> None:
    # user 0: 1 event; user 1: 2 events; user 2: 3 events; user 3: 5 events
    rows = [(0, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 4), (3, 5), (3, 1), (3, 2), (3, 3)]
    con = store(rows)
    loo = leave_one_out(con, "d", max_len=3)
    assert loo.train.column("user_id").to_pylist() == [1, 2, 3, 3]
    assert loo.valid.column("user_id").to_pylist() == [3]
    assert loo.test.column("user_id").to_pylist() == [2, 3]
    test3 = loo.test.filter(pa.compute.equal(loo.test.column("user_id"), 3)).to_pylist()[0]
    # the test input holds the validation item (2) last, truncated to max_len
    assert test3["history"] == [5, 1, 2]
    assert test3["target"] == 3
    assert loo.valid.to_pylist()[0]["history"] == [4, 5, 1]
    assert loo.train.to_pylist()[0]["history"] == [2]


def test_leave_one_out_agrees_with_evaluate_loo_examples() -> None:
    rng = np.random.default_rng(0)
    rows = [(int(u), int(i)) for u, i in zip(rng.integers(0, 12, 300), rng.integers(1, 30, 300))]
    con = store(rows)
    loo = leave_one_out(con, "d", max_len=5)
    ref = loo_examples(con, "d", max_len=5)
    for ours, theirs in ((loo.train, ref.train), (loo.valid, ref.valid), (loo.test, ref.test)):
        assert len(ours) == len(theirs)
        assert sorted(ours.column("target").to_pylist()) == sorted(theirs.targets.tolist())


def test_time_cuts_fall_on_timestamp_boundaries() -> None:
    from streamsim.splits import SplitSpec, resolve_split
    from streamsim.store import connect_memory, read_events
    from tests.support.toy import store_toy

    con = connect_memory()
    store_toy(con, n_events=400)
    ts = read_events(con, "toy").column("ts").to_numpy()
    valid_t, replay_t = float(ts[200]), float(ts[300])
    sp = resolve_split(con, "toy", SplitSpec(by="time", valid_start=valid_t, replay_start=replay_t))
    assert sp.valid.start == int(np.searchsorted(ts, valid_t))
    assert sp.replay.start == int(np.searchsorted(ts, replay_t))
    assert ts[: sp.valid.start].max() < valid_t <= ts[sp.valid.start]
    assert ts[sp.valid.start : sp.replay.start].max() < replay_t <= ts[sp.replay.start]
    assert sp.replay.stop == len(ts)


@pytest.mark.parametrize("name", ["ml-100k-stream", "beauty-stream"])
def test_real_data_scenarios_split_without_leakage(name: str) -> None:
    from streamsim import scenario
    from streamsim.ingest import ingest
    from streamsim.splits import resolve_split
    from streamsim.store import connect_memory, read_events
    from tests.conftest import shared_dataset

    sc = scenario.load(name)
    con = connect_memory()
    ingest(con, shared_dataset(sc.data.dataset), name=sc.data.dataset)
    sp = resolve_split(con, sc.data.dataset, sc.split)
    ts = read_events(con, sc.data.dataset).column("ts").to_numpy()
    pre, val, rep = (ts[r.start : r.stop] for r in (sp.pretrain, sp.valid, sp.replay))
    assert min(len(pre), len(val), len(rep)) > 0
    assert pre.max() < val.min()  # day-resolution Amazon data: cuts move to a day boundary
    assert val.max() < rep.min()
    report = split_report(con, sc.data.dataset, sp)
    assert report["replay_events"] == len(rep)
    assert 0 < report["events_unseen_user_or_item"] < len(rep)  # real logs have cold starts
