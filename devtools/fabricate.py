"""Fabricated datasets and runs for tests and benchmarks of metrics, compare and dashboards.

No model and no engine: the run tables are filled with rows drawn from a seeded generator, with
the same columns and invariants the replay engine writes (ranks >= 1, hit/ndcg/rr derived from the
rank, one micro-batch per `batch_size` consecutive events).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from streamsim.store import write_dataset

T0 = 1_700_006_400  # 2023-11-15 00:00:00 UTC, a Wednesday
DAY = 86400


def fabricate_dataset(
    con: duckdb.DuckDBPyConnection,
    name: str = "synth",
    *,
    n_events: int = 3000,
    n_users: int = 60,
    n_items: int = 200,
    n_categories: int = 5,
    n_days: int = 28,
    drifts: Sequence[tuple[int, int]] = (),
    seed: int = 0,
    category_names: Sequence[str] | None = None,
    item_name: str = "item",
) -> None:
    """Store a dataset of `n_events` spread evenly over `n_days` from `T0`.

    `drifts` are global ground-truth drifts as ``(start_idx, end_idx)`` pairs; `category_names`
    overrides the raw category names (e.g. to test escaping).
    """
    rng = np.random.default_rng(seed)
    idx = np.arange(n_events, dtype=np.int64)
    ts = T0 + (idx * (n_days * DAY) // n_events).astype(np.int64)
    users = rng.integers(0, n_users, n_events).astype(np.int32)
    items = rng.integers(1, n_items + 1, n_events).astype(np.int32)
    item_cat = (np.arange(n_items + 1) % n_categories).astype(np.int32)
    events = pa.table(
        {
            "idx": idx,
            "user_id": users,
            "item_id": items,
            "ts": ts,
            "category": item_cat[items],
        }
    )
    names = list(category_names) if category_names else [f"cat{c}" for c in range(n_categories)]
    items_table = pa.table(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int32),
            "raw": [f"{item_name}{i}" for i in range(1, n_items + 1)],
            "category": item_cat[1:],
            "title": [f"{item_name} title {i}" for i in range(1, n_items + 1)],
            "genres": [names[c] for c in item_cat[1:]],
        }
    )
    drift_table = pa.table(
        {
            "drift_id": np.arange(len(drifts), dtype=np.int32),
            "kind": ["sudden"] * len(drifts),
            "drift_type": ["real"] * len(drifts),
            "scope": [1.0] * len(drifts),
            "magnitude": [0.5] * len(drifts),
            "user_id": pa.nulls(len(drifts), pa.int32()),
            "start_ts": [int(ts[s]) for s, _ in drifts],
            "end_ts": [int(ts[e]) for _, e in drifts],
            "start_idx": [int(s) for s, _ in drifts],
            "end_idx": [int(e) for _, e in drifts],
        }
    )
    write_dataset(
        con,
        name,
        events=events,
        users=pa.table(
            {
                "user_id": np.arange(n_users, dtype=np.int32),
                "raw": [f"u{u}" for u in range(n_users)],
            }
        ),
        items=items_table,
        categories=pa.table({"category": np.arange(n_categories, dtype=np.int32), "raw": names}),
        drifts=drift_table,
        source="synthetic",
        format="runfactory",
        params={"seed": seed},
    )


def ranks_from(rng: np.random.Generator, n: int, *, p_top: float = 0.4) -> np.ndarray:
    """Ranks with a share `p_top` in the top 10 (uniform) and a long tail otherwise."""
    top = rng.random(n) < p_top
    return np.where(top, rng.integers(1, 11, n), rng.integers(11, 500, n)).astype(np.int64)


def fabricate_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    dataset: str = "synth",
    policy: str = "none",
    seed: int = 0,
    ranks: np.ndarray | None = None,
    start_idx: int = 0,
    batch_size: int = 64,
    alarms: Sequence[tuple[str, str, int]] = (),
    scenario: str = "fabricated",
    model: str = "toy",
    adapts: bool = True,
) -> None:
    """A complete run over the dataset's events ``start_idx..`` with ranks from `ranks` or drawn.

    `alarms` are ``(detector, signal, idx)`` triples.
    """
    ev = con.execute(
        "SELECT idx, ts, user_id, item_id FROM events WHERE dataset = ? AND idx >= ? ORDER BY idx",
        [dataset, start_idx],
    ).fetchnumpy()
    n = len(ev["idx"])
    rng = np.random.default_rng(seed)
    rank = ranks_from(rng, n) if ranks is None else np.asarray(ranks, dtype=np.int64)
    assert len(rank) == n, f"`ranks` has {len(rank)} entries, the run has {n} events"
    pos = np.arange(n)
    batch = (pos // batch_size).astype(np.int64)
    ndcg = np.where(rank <= 10, 1.0 / np.log2(rank + 1.0), 0.0)
    rr = np.where(rank <= 10, 1.0 / rank, 0.0)
    n_items_row = con.execute(
        "SELECT max(item_id) FROM items WHERE dataset = ?", [dataset]
    ).fetchall()
    n_items = int(n_items_row[0][0])
    events = pa.table(
        {
            "run_id": [run_id] * n,
            "idx": ev["idx"].astype(np.int64),
            "batch_id": batch,
            "ts": ev["ts"].astype(np.int64),
            "user_id": ev["user_id"].astype(np.int32),
            "item_id": ev["item_id"].astype(np.int32),
            "rank": rank,
            "hit10": rank <= 10,
            "hit50": rank <= 50,
            "ndcg10": ndcg,
            "rr10": rr,
            "is_repeat": rng.random(n) < 0.3,
            "is_cold": rng.random(n) < 0.05,
            "top1": rng.integers(1, n_items + 1, n).astype(np.int32),
        }
    )
    n_batches = int(batch[-1]) + 1 if n else 0
    starts = np.arange(n_batches) * batch_size
    stops = np.minimum(starts + batch_size, n) - 1
    loss = 2.0 + rng.random(n_batches)
    batches = pa.table(
        {
            "run_id": [run_id] * n_batches,
            "batch_id": np.arange(n_batches, dtype=np.int64),
            "first_idx": ev["idx"][starts].astype(np.int64),
            "last_idx": ev["idx"][stops].astype(np.int64),
            "n_events": (stops - starts + 1).astype(np.int32),
            "t_start": ev["ts"][starts].astype(np.int64),
            "t_end": ev["ts"][stops].astype(np.int64),
            "tta_loss_before": loss if adapts else pa.nulls(n_batches, pa.float64()),
            "tta_loss_after": loss - 0.1 * rng.random(n_batches)
            if adapts
            else pa.nulls(n_batches, pa.float64()),
            "param_distance": np.cumsum(rng.random(n_batches) * 0.01)
            if adapts
            else np.zeros(n_batches),
            "backward_passes": np.full(n_batches, 1 if adapts else 0, dtype=np.int32),
            "filtered_share": pa.nulls(n_batches, pa.float64()),
            "time_adapt": rng.random(n_batches) * 0.02 if adapts else np.zeros(n_batches),
            "time_score": rng.random(n_batches) * 0.01,
            "time_reveal": rng.random(n_batches) * 0.002,
            "time_detect": rng.random(n_batches) * 0.001,
            "time_probe": np.zeros(n_batches),
            "tta_samples_saved": np.zeros(n_batches, dtype=np.int32),
            "tta_skipped_steps": np.zeros(n_batches, dtype=np.int32),
            "tta_reset": np.zeros(n_batches, dtype=bool),
            "tta_step_norm": rng.random(n_batches) * 1e-3
            if adapts
            else pa.nulls(n_batches, pa.float64()),
            "tta_step_rel": rng.random(n_batches) * 1e-5
            if adapts
            else pa.nulls(n_batches, pa.float64()),
        }
    )
    # label-free signals, one row per (batch, signal): `run_signals`
    signal_values = {
        "topk_entropy": rng.random(n_batches),
        "coverage": rng.random(n_batches) * 0.1,
    }
    if adapts:
        signal_values["delta_next_mean"] = rng.normal(0.0, 1.0, n_batches)
    signals = pa.table(
        {
            "run_id": [run_id] * (n_batches * len(signal_values)),
            "batch_id": np.tile(np.arange(n_batches, dtype=np.int64), len(signal_values)),
            "signal": np.repeat(list(signal_values), n_batches),
            "value": np.concatenate(list(signal_values.values())),
        }
    )
    alarm_idx = [i for _, _, i in alarms]
    ts_of = dict(zip(ev["idx"].tolist(), ev["ts"].tolist())) if alarms else {}
    alarm_table = pa.table(
        {
            "run_id": [run_id] * len(alarms),
            "detector": [d for d, _, _ in alarms],
            "signal": [s for _, s, _ in alarms],
            "idx": pa.array(alarm_idx, pa.int64()),
            "ts": pa.array([ts_of[i] for i in alarm_idx], pa.int64()),
        }
    )
    fp = con.execute("SELECT fingerprint FROM datasets WHERE name = ?", [dataset]).fetchall()
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, 'hash0', ?, ?, 'ckpt0', ?, ?, ?, 'complete', ?, ?,"
        " ?, ?, 1234.5)",
        [
            run_id,
            dataset,
            scenario,
            fp[0][0],
            model,
            policy,
            seed,
            json.dumps({"policy": {"name": policy}}),
            datetime(2024, 1, 1),
            datetime(2024, 1, 1, 0, 5),
            n,
            n_batches - 1,
        ],
    )
    for table, data in (
        ("run_events", events),
        ("run_batches", batches),
        ("run_signals", signals),
        ("run_alarms", alarm_table),
    ):
        con.register("_fab", data)
        try:
            cols = ", ".join(data.column_names)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _fab")
        finally:
            con.unregister("_fab")


def copy_run(
    con: duckdb.DuckDBPyConnection,
    src: str,
    dst: str,
    *,
    policy: str,
    ndcg_shift: float = 0.0,
) -> None:
    """A copy of run `src` named `dst` whose per-event NDCG@10 is shifted by `ndcg_shift`."""
    con.execute(
        "INSERT INTO runs SELECT * REPLACE (? AS run_id, ? AS policy) FROM runs WHERE run_id = ?",
        [dst, policy, src],
    )
    con.execute(
        "INSERT INTO run_events SELECT * REPLACE (? AS run_id, ndcg10 + ? AS ndcg10)"
        " FROM run_events WHERE run_id = ?",
        [dst, ndcg_shift, src],
    )
    for table in ("run_batches", "run_signals"):
        con.execute(
            f"INSERT INTO {table} SELECT * REPLACE (? AS run_id) FROM {table} WHERE run_id = ?",
            [dst, src],
        )
