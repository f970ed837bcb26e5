"""Temporal splits over a stored dataset: pretraining | validation | replay.

Every cut falls on a timestamp boundary: an event belongs to the period whose time range holds its
timestamp, so events sharing a timestamp are never split across periods, and every pretraining
timestamp is strictly earlier than every validation timestamp, itself strictly earlier than every
replay timestamp (no future leakage).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Literal

import duckdb
import pyarrow as pa

from streamsim import config
from streamsim.errors import ScenarioError
from streamsim.store import dataset_info, fetch_one, idx_at_time

CUTS = ("pretrain_start", "valid_start", "replay_start", "replay_end")


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitSpec:
    """[split]: pretraining | validation | replay cuts, as event fractions or times.

    With ``by = "time"`` a cut is epoch seconds, a TOML date or datetime, or an ISO 8601 string
    (``"2023-12-04"``, ``"2023-12-04T08:00:00+01:00"``; UTC unless it names an offset); a cut
    given as a date implies ``by = "time"``. Events before `pretrain_start` (default: the first
    event) are not read at all, neither for training nor for the histories the replay starts
    from: on a long log it is what keeps pretraining short.
    """

    by: Literal["fraction", "time"] = "fraction"
    pretrain_start: float | None = None  # start of the pretraining period (None: first event)
    valid_start: float = 0.6  # start of the validation window
    replay_start: float = 0.7  # start of the replay period (= end of validation)
    replay_end: float | None = None  # end of the replay period (None: the last event)

    @classmethod
    def from_table(cls, table: Any, where: str) -> SplitSpec:
        if isinstance(table, dict):
            table = _dates_as_seconds(table, where)
        spec = cls(**config.bind(cls, table, where))
        for key in CUTS:
            config.at_least_zero(getattr(spec, key), f"{where} key {key!r}")
        if spec.replay_start < spec.valid_start:
            msg = f"{where}: replay_start ({spec.replay_start}) < valid_start ({spec.valid_start})"
            raise ScenarioError(msg)
        if spec.by == "fraction":
            for key in CUTS:
                v = getattr(spec, key)
                if v is not None and v > 1.0:
                    msg = f"{where} key {key!r}: a fraction must be <= 1; got {v}"
                    raise ScenarioError(msg)
        if spec.replay_end is not None and spec.replay_end <= spec.replay_start:
            msg = (
                f"{where}: empty replay window: replay_end ({spec.replay_end}) <= "
                f"replay_start ({spec.replay_start})"
            )
            raise ScenarioError(msg)
        if spec.valid_start <= 0:
            msg = f"{where}: empty pretraining period: valid_start = {spec.valid_start}"
            raise ScenarioError(msg)
        if spec.pretrain_start is not None and spec.pretrain_start >= spec.valid_start:
            msg = (
                f"{where}: empty pretraining period: pretrain_start ({spec.pretrain_start}) >="
                f" valid_start ({spec.valid_start})"
            )
            raise ScenarioError(msg)
        return spec


def _dates_as_seconds(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The [split] table with every cut given as a date or datetime in epoch seconds; such a
    cut implies ``by = "time"`` and is refused with ``by = "fraction"``."""
    out = dict(table)
    dated = [k for k in CUTS if isinstance(out.get(k), (str, date))]  # datetime is a date
    for key in dated:
        out[key] = as_epoch_seconds(out[key], f"{where} key {key!r}")
    if dated:
        by = out.setdefault("by", "time")
        if by != "time":
            msg = (
                f"{where} key {dated[0]!r}: a cut given as a date needs by = 'time'; got"
                f" by = {by!r}"
            )
            raise ScenarioError(msg)
    return out


def as_epoch_seconds(value: str | date, where: str) -> float:
    """A TOML date/datetime or an ISO 8601 string as epoch seconds (UTC unless it has an
    offset)."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day)
    else:
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            msg = (
                f"{where}: expected a number or an ISO 8601 date or datetime such as"
                f" '2023-12-04' or '2023-12-04T08:00:00+01:00'; got {value!r}"
            )
            raise ScenarioError(msg) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class IndexRange:
    """Replay indices ``[start, stop[`` and their time range ``[t_start, t_stop[`` (seconds)."""

    start: int
    stop: int
    t_start: int
    t_stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class Split:
    pretrain: IndexRange
    valid: IndexRange
    replay: IndexRange


def _cut_time(con: duckdb.DuckDBPyConnection, dataset: str, by: str, value: float) -> int:
    """The timestamp at which a cut given as an event fraction or epoch seconds falls."""
    if by == "time":
        return int(value)
    info = dataset_info(con, dataset)
    position = min(int(value * info.n_events), info.n_events - 1)
    row = fetch_one(con, "SELECT ts FROM dataset_events(?) WHERE idx = ?", [dataset, position])
    assert row is not None
    return int(row[0])


def resolve_split(con: duckdb.DuckDBPyConnection, dataset: str, spec: SplitSpec) -> Split:
    """Turn a `SplitSpec` into index ranges of `dataset`; `ScenarioError` when a period is empty.

    The pretraining period starts at the first event at or after `pretrain_start`; every reader
    of the dataset (training examples, the replay's warm-up) starts there."""
    info = dataset_info(con, dataset)
    if spec.by == "fraction":
        bounds = [spec.valid_start, spec.replay_start] + (
            [spec.replay_end] if spec.replay_end is not None else []
        )
        if not all(0.0 < b <= 1.0 for b in bounds) or sorted(bounds) != bounds:
            msg = (
                "[split] fractions must satisfy 0 < valid_start <= replay_start <= replay_end <= 1,"
                f" got {bounds}"
            )
            raise ScenarioError(msg)
    t_pre = info.t_min
    if spec.pretrain_start is not None:
        t_pre = max(t_pre, _cut_time(con, dataset, spec.by, spec.pretrain_start))
    t_valid = _cut_time(con, dataset, spec.by, spec.valid_start)
    t_replay = _cut_time(con, dataset, spec.by, spec.replay_start)
    if spec.replay_end is None or (spec.by == "fraction" and spec.replay_end >= 1.0):
        t_end = info.t_max + 1
    else:
        t_end = _cut_time(con, dataset, spec.by, spec.replay_end)
    i_pre = idx_at_time(con, dataset, t_pre) if spec.pretrain_start is not None else 0
    i_valid = idx_at_time(con, dataset, t_valid)
    i_replay = idx_at_time(con, dataset, t_replay)
    i_end = idx_at_time(con, dataset, t_end)
    split = Split(
        pretrain=IndexRange(i_pre, i_valid, t_pre, t_valid),
        valid=IndexRange(i_valid, i_replay, t_valid, t_replay),
        replay=IndexRange(i_replay, i_end, t_replay, t_end),
    )
    for period in ("pretrain", "replay"):
        if len(getattr(split, period)) == 0:
            msg = f"[split] the {period} period of dataset {dataset!r} is empty: {split}"
            raise ScenarioError(msg)
    return split


# --------------------------------------------------------------------------- filtering


@dataclass(frozen=True, slots=True)
class KeptIds:
    """Users and items that survive a k-core / minimum-count filter, with the surviving events."""

    users: pa.Array
    items: pa.Array
    n_events: int
    rounds: int


def _period_where(period: IndexRange | None) -> tuple[str, list[int]]:
    if period is None:
        return "", []
    return " WHERE idx >= ? AND idx < ?", [period.start, period.stop]


def kcore(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    *,
    min_user: int,
    min_item: int,
    period: IndexRange | None = None,
    iterate: bool = True,
) -> KeptIds:
    """Users with >= `min_user` and items with >= `min_item` events, counted on `period` only.

    With `iterate` (k-core) the two conditions are re-applied until both hold on the remaining
    events; without it (minimum-count filter) each is applied once to the raw period counts.
    Pure: the store is not modified (use `filter_events` to get the surviving events).
    """
    if min_user < 1 or min_item < 1:
        msg = f"minimum counts must be >= 1, got min_user={min_user}, min_item={min_item}"
        raise ValueError(msg)
    where, params = _period_where(period)
    cur = con.cursor()
    try:
        cur.execute(
            "CREATE TEMP TABLE _k AS SELECT user_id, item_id FROM dataset_events(?)" + where,
            [dataset, *params],
        )
        rounds = 0
        while True:
            rounds += 1
            if iterate:
                counts = (
                    "SELECT count(*) FROM _k WHERE user_id IN (SELECT user_id FROM _k"
                    " GROUP BY 1 HAVING count(*) < ?) OR item_id IN (SELECT item_id FROM _k"
                    " GROUP BY 1 HAVING count(*) < ?)"
                )
                row = fetch_one(cur, counts, [min_user, min_item])
                if row is None or row[0] == 0:
                    break
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE _k AS SELECT k.* FROM _k k"
                " SEMI JOIN (SELECT user_id FROM _k GROUP BY 1 HAVING count(*) >= ?) u"
                " USING (user_id)"
                " SEMI JOIN (SELECT item_id FROM _k GROUP BY 1 HAVING count(*) >= ?) i"
                " USING (item_id)",
                [min_user, min_item],
            )
            if not iterate:
                break
        users = cur.sql("SELECT DISTINCT user_id FROM _k ORDER BY 1").to_arrow_table()
        items = cur.sql("SELECT DISTINCT item_id FROM _k ORDER BY 1").to_arrow_table()
        n = fetch_one(cur, "SELECT count(*) FROM _k")
    finally:
        cur.close()
    assert n is not None
    return KeptIds(
        users=users.column(0).combine_chunks(),
        items=items.column(0).combine_chunks(),
        n_events=int(n[0]),
        rounds=rounds,
    )


def filter_events(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    kept: KeptIds,
    *,
    period: IndexRange | None = None,
) -> pa.Table:
    """The events of `period` (all when None) whose user and item are both in `kept`."""
    where, params = _period_where(period)
    cur = con.cursor()
    try:
        cur.register("_ku", pa.table({"user_id": kept.users}))
        cur.register("_ki", pa.table({"item_id": kept.items}))
        return cur.sql(
            "SELECT idx, user_id, item_id, ts, category, rating FROM dataset_events($dataset)"
            " SEMI JOIN _ku USING (user_id) SEMI JOIN _ki USING (item_id)"
            + where.replace("?", "$lo", 1).replace("?", "$hi", 1)
            + " ORDER BY idx",
            params={"dataset": dataset, **({"lo": params[0], "hi": params[1]} if params else {})},
        ).to_arrow_table()
    finally:
        cur.close()


# --------------------------------------------------------------------------- cold-start report


def split_report(con: duckdb.DuckDBPyConnection, dataset: str, split: Split) -> dict[str, int]:
    """How many replay events involve users or items never seen before the cut.

    "Before the cut" = the pretraining and validation periods (``split.pretrain.start <= idx <
    split.replay.start``: events before a later pretraining start are never read);
    an event counts as cold when its user (item) has no event there, even if the user appeared
    earlier in the replay itself.
    """
    row = fetch_one(
        con,
        "WITH past AS (SELECT user_id, item_id FROM dataset_events($d)"
        " WHERE idx >= $pre AND idx < $cut),"
        " pu AS (SELECT DISTINCT user_id FROM past), pi AS (SELECT DISTINCT item_id FROM past),"
        " r AS (SELECT e.user_id, e.item_id, pu.user_id IS NULL AS cu, pi.item_id IS NULL AS ci"
        " FROM dataset_events($d) e LEFT JOIN pu USING (user_id) LEFT JOIN pi USING (item_id)"
        " WHERE e.idx >= $cut AND e.idx < $stop)"
        " SELECT count(*), count(*) FILTER (cu), count(*) FILTER (ci),"
        " count(*) FILTER (cu OR ci), count(DISTINCT user_id) FILTER (cu),"
        " count(DISTINCT item_id) FILTER (ci) FROM r",
        {"d": dataset, "pre": split.pretrain.start, "cut": split.replay.start,
         "stop": split.replay.stop},  # type: ignore[arg-type]  # fmt: skip
    )
    assert row is not None
    keys = (
        "replay_events",
        "events_unseen_user",
        "events_unseen_item",
        "events_unseen_user_or_item",
        "unseen_users",
        "unseen_items",
    )
    return {k: int(v) for k, v in zip(keys, row, strict=True)}


@dataclass(frozen=True, slots=True)
class PeriodCounts:
    """One period of a split: its name, time range and how many events, users and items."""

    period: str  # pretrain | valid | replay
    t_start: int  # epoch seconds, inclusive
    t_stop: int  # exclusive
    events: int
    users: int
    items: int

    def line(self) -> str:
        """``name  start -> end UTC: N events, U users, I items`` with the dates in ISO form."""
        start, stop = (
            datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            for t in (self.t_start, self.t_stop)
        )
        return (
            f"{self.period} {start} -> {stop} UTC: {self.events:,} events, {self.users:,} users,"
            f" {self.items:,} items"
        )


def period_counts(
    con: duckdb.DuckDBPyConnection, dataset: str, split: Split
) -> tuple[PeriodCounts, ...]:
    """Events, distinct users and distinct items of each period of `split`."""
    out = []
    for period in ("pretrain", "valid", "replay"):
        r: IndexRange = getattr(split, period)
        row = fetch_one(
            con,
            "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id)"
            " FROM dataset_events(?) WHERE idx >= ? AND idx < ?",
            [dataset, r.start, r.stop],
        )
        assert row is not None
        out.append(PeriodCounts(period, r.t_start, r.t_stop, *(int(v) for v in row)))
    return tuple(out)


# --------------------------------------------------------------------------- leave-one-out


@dataclass(frozen=True, slots=True)
class LooSplit:
    """RecBole ``LS: valid_and_test`` examples; each table has one row per example.

    Columns: ``user_id``, ``target_idx`` (replay index of the target event), ``target`` (item),
    ``ts`` (target timestamp), ``history`` (the previous <= max_len items of the user, oldest
    first) and ``history_ts``.
    """

    train: pa.Table
    valid: pa.Table
    test: pa.Table
    max_len: int


def leave_one_out(con: duckdb.DuckDBPyConnection, dataset: str, *, max_len: int) -> LooSplit:
    """RecBole's leave-one-out split over augmented examples (docs/baselines.md).

    Every event after a user's first is one example (the previous <= `max_len` items -> this
    item). Per user, with m examples, RecBole leaves ``min(2, m - 1)`` out: the last example is
    test and the one before validation, so the test input includes the validation item. Users
    with fewer than 3 events follow RecBole too: 2 events (one example) -> train only, 1 event ->
    no example; a user with exactly 3 events (two examples) gives one train and one test example
    and no validation example.
    """
    if max_len < 1:
        msg = f"max_len must be >= 1, got {max_len}"
        raise ValueError(msg)
    cur = con.cursor()
    try:
        cur.execute(
            "CREATE TEMP TABLE _loo AS SELECT user_id, idx AS target_idx, item_id AS target, ts,"
            " k, m, history, history_ts FROM (SELECT user_id, idx, item_id, ts,"
            " row_number() OVER w - 1 AS k, count(*) OVER (PARTITION BY user_id) - 1 AS m,"
            f" list(item_id) OVER (w ROWS BETWEEN {int(max_len)} PRECEDING AND 1 PRECEDING)"
            " AS history,"
            f" list(ts) OVER (w ROWS BETWEEN {int(max_len)} PRECEDING AND 1 PRECEDING)"
            " AS history_ts FROM dataset_events(?)"
            " WINDOW w AS (PARTITION BY user_id ORDER BY idx)) WHERE k >= 1",
            [dataset],
        )
        # example number e = k - 1 of m; leave = min(2, m - 1)
        part = (
            "CASE WHEN least(2, m - 1) >= 1 AND k - 1 = m - 1 THEN 'test'"
            " WHEN least(2, m - 1) = 2 AND k - 1 = m - 2 THEN 'valid' ELSE 'train' END"
        )
        tables = {}
        for name in ("train", "valid", "test"):
            tables[name] = cur.sql(
                "SELECT user_id, target_idx, target, ts, history, history_ts FROM _loo"
                f" WHERE {part} = $p ORDER BY target_idx",
                params={"p": name},
            ).to_arrow_table()
    finally:
        cur.close()
    return LooSplit(
        train=tables["train"], valid=tables["valid"], test=tables["test"], max_len=max_len
    )
