"""k-core / min-count filtering on a period, split cold-start report, RecBole leave-one-out."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from streamsim.errors import ScenarioError
from streamsim.leave_one_out import loo_examples
from streamsim.splits import (
    IndexRange,
    Split,
    filter_events,
    kcore,
    leave_one_out,
    period_counts,
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


# ------------------------------------------------------------------ cuts given as dates

DAY = 86_400
DEC1 = 1_701_388_800  # 2023-12-01T00:00:00Z


def daily_store() -> duckdb.DuckDBPyConnection:
    """Ten events, one a day from 2023-12-01 (UTC); event 0 is the only one of item 9."""
    con = connect_memory()
    items = [9, 1, 2, 1, 2, 3, 1, 2, 3, 1]
    write_dataset(
        con,
        "days",
        events=pa.table(
            {
                "idx": np.arange(10),
                "user_id": np.zeros(10, dtype=np.int32),
                "item_id": np.array(items, dtype=np.int32),
                "ts": DEC1 + np.arange(10, dtype=np.int64) * DAY,
            }
        ),
        users=pa.table({"user_id": pa.array([0], pa.int32()), "raw": ["u"]}),
        items=pa.table({"item_id": pa.array([1, 2, 3, 9], pa.int32()), "raw": list("1239")}),
        source="t",
        format="t",
    )
    return con


def test_iso_dates_and_pretrain_start_resolve_to_their_days(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streamsim import scenario
    from streamsim.splits import SplitSpec, resolve_split
    from streamsim.training_examples import build_examples

    path = tmp_path / "s.toml"
    path.write_text(
        '[data]\ndataset = "days"\n[split]\npretrain_start = "2023-12-02"\n'
        'valid_start = "2023-12-05T01:00:00+01:00"\nreplay_start = 2023-12-07\n'
    )  # a string, a datetime with an offset (= Dec 5, 00:00 UTC) and a TOML date
    spec = scenario.load(path).split
    assert spec == SplitSpec(
        by="time", pretrain_start=DEC1 + DAY, valid_start=DEC1 + 4 * DAY,
        replay_start=DEC1 + 6 * DAY,
    )  # fmt: skip
    con = daily_store()
    split = resolve_split(con, "days", spec)
    assert (split.pretrain.start, split.valid.start, split.replay.start) == (1, 4, 6)
    assert split.pretrain.t_start == DEC1 + DAY
    # nothing before the pretraining period is read: item 9 (event 0) is in no history
    train = build_examples(
        con, "days", max_len=8, collect_start=split.pretrain.start,
        collect_stop=split.pretrain.stop, history_start=split.pretrain.start,
    )  # fmt: skip
    valid = build_examples(
        con, "days", max_len=8, collect_start=split.valid.start,
        collect_stop=split.valid.stop, history_start=split.pretrain.start,
    )  # fmt: skip
    assert train.targets.tolist() == [2, 1]  # events 2 and 3 (event 1 has no history)
    for seen in (train.items, valid.items, valid.targets):
        assert 9 not in seen
    assert valid.lengths.tolist() == [3, 4]  # events 1..3, then 1..4
    assert not train.known[9]
    assert not valid.known[9]
    pretrain, valid_p, replay = period_counts(con, "days", split)
    assert pretrain.line() == (
        "pretrain 2023-12-02 00:00:00 -> 2023-12-05 00:00:00 UTC: 3 events, 1 users, 2 items"
    )
    assert (valid_p.events, replay.events, replay.items) == (2, 4, 3)


def test_date_cuts_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streamsim import scenario

    path = tmp_path / "s.toml"
    for split, match in (
        ('by = "fraction"\nvalid_start = "2023-12-05"', "a cut given as a date needs by = 'time'"),
        ('valid_start = "soon"', r"key 'valid_start': expected a number or an ISO 8601 date"),
        ('pretrain_start = 0.7\nvalid_start = 0.6', "empty pretraining period: pretrain_start"),
    ):
        path.write_text(f'[data]\ndataset = "d"\n[split]\n{split}\n')
        with pytest.raises(ScenarioError, match=match):
            scenario.load(path)
