"""Synthetic interest-shift streams: configuration, generator with ground truth.

`SynthConfig` and `DriftSpec` are the ``[data.synthetic]`` section of a scenario file; see
docs/scenarios.md. `generate` makes the Arrow tables; `ensure_synthetic` stores them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa

from streamsim import store
from streamsim.store import DatasetInfo

DRIFT_KINDS = ("sudden", "gradual", "incremental", "recurring")
DRIFT_TYPES = ("real", "virtual")


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftSpec:
    """One scheduled interest shift."""

    kind: Literal["sudden", "gradual", "incremental", "recurring"]
    start_day: float = 0.0  # day (from start) the drift begins
    width_days: float = 0.0  # sigmoid width (gradual) / ramp length (incremental)
    scope: float = 1.0  # fraction of users affected
    magnitude: float = 0.5  # target Jensen-Shannon divergence between regimes (0..1)
    drift_type: Literal["real", "virtual"] = "virtual"


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthConfig:
    """Generator parameters (``[data.synthetic]``)."""

    n_users: int = 1000
    n_items: int = 800
    n_topics: int = 8
    zipf_a: float = 1.1  # within-topic popularity exponent
    dirichlet_alpha: float = 0.3  # concentration of user interest mixtures
    n_successors: int = 3  # preferred successors per item (within its topic)
    p_transition: float = 0.6  # probability of following a preferred successor
    events_per_user: int = 30
    session_mean_events: float = 5.0
    start_date: str = "2024-01-01"
    duration_days: int = 56
    weekday_share: float | None = None  # share of events on weekdays (None: calendar rhythm)
    new_items_days: tuple[float, ...] = ()  # days at which batches of new items enter
    new_items_count: int = 0  # items per entering batch
    drifts: tuple[DriftSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class SyntheticData:
    """Arrow tables in the form `streamsim.store.write_dataset` takes."""

    events: pa.Table
    users: pa.Table
    items: pa.Table
    categories: pa.Table
    regimes: pa.Table
    drifts: pa.Table


def _js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between rows of p and q."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(a / np.maximum(b, 1e-300)), 0.0)
        return np.asarray(t.sum(axis=-1))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def generate(config: SynthConfig, seed: int) -> SyntheticData:
    """Generate a synthetic interest-shift stream with ground truth (deterministic by seed).

    Only the first entry of ``config.drifts`` shapes the regimes (one drift per stream).
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    c = config
    n_u, k, epu = c.n_users, c.n_topics, c.events_per_user
    n_i = c.n_items
    item_topic = np.arange(n_i) % k  # item ids 1..n_i -> index 0..n_i-1
    n_new = c.new_items_count * len(c.new_items_days)
    arrival_day = np.zeros(n_i)
    for b, day in enumerate(c.new_items_days):
        lo = n_i - n_new + b * c.new_items_count
        arrival_day[lo : lo + c.new_items_count] = day
    # within-topic Zipf weights by a random rank
    rank = np.empty(n_i)
    for t in range(k):
        members = np.flatnonzero(item_topic == t)
        rank[members] = rng.permutation(len(members)) + 1
    weight = rank ** (-c.zipf_a)
    # sparse within-topic successor tables: regime 0 and (real drift) regime 1
    members_by_topic = [np.flatnonzero(item_topic == t) for t in range(k)]
    succ = np.empty((2, n_i, c.n_successors), dtype=np.int64)
    for r in range(2):
        for t in range(k):
            mem = members_by_topic[t]
            succ[r, mem] = rng.choice(mem, size=(len(mem), c.n_successors))
    # user interest mixtures, regime 0 and 1
    theta0 = rng.dirichlet(np.full(k, c.dirichlet_alpha), size=n_u)
    drift = next((d for d in c.drifts), None)
    affected = np.zeros(n_u, dtype=bool)
    theta1 = theta0.copy()
    if drift is not None:
        affected = rng.random(n_u) < drift.scope
        shifted = np.roll(theta0, k // 2, axis=1)
        w = min(1.0, 2.0 * drift.magnitude)
        theta1[affected] = (1 - w) * theta0[affected] + w * shifted[affected]
    # timestamps: day x hour rhythm
    t0 = int(datetime.fromisoformat(c.start_date).replace(tzinfo=timezone.utc).timestamp())
    days = np.arange(c.duration_days)
    weekday = (np.asarray(days) + datetime.fromtimestamp(t0, timezone.utc).weekday()) % 7
    is_weekend_day = weekday >= 5
    day_w = np.where(is_weekend_day, 1.3, 1.0)
    if c.weekday_share is not None:
        day_w = np.where(is_weekend_day, (1 - c.weekday_share) / 2, c.weekday_share / 5)
    hour_w = (
        0.3
        + np.exp(-0.5 * ((np.arange(24) - 20) / 3.0) ** 2)
        + 0.5 * np.exp(-0.5 * ((np.arange(24) - 12) / 2.0) ** 2)
    )
    n = n_u * epu
    d_draw = rng.choice(c.duration_days, size=n, p=day_w / day_w.sum())
    h_draw = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    ts = (t0 + d_draw * 86400 + h_draw * 3600 + rng.integers(0, 3600, size=n)).reshape(n_u, epu)
    ts.sort(axis=1)
    day_f = (ts - t0) / 86400.0
    # regime probability per event (n_u, epu): share of regime-1 mixture
    mix = np.zeros((n_u, epu))
    label = np.zeros((n_u, epu), dtype=np.int32)
    if drift is not None:
        a = affected[:, None]
        if drift.kind == "sudden":
            mix = (day_f >= drift.start_day).astype(float)
            label = (a & (mix > 0)).astype(np.int32)
        elif drift.kind == "gradual":
            width = max(drift.width_days, 1e-6)
            p = 1.0 / (1.0 + np.exp(-(day_f - drift.start_day - width / 2) / (width / 8)))
            mix = (rng.random((n_u, epu)) < p).astype(float)
            label = (a & (mix > 0)).astype(np.int32)
        elif drift.kind == "incremental":
            width = max(drift.width_days, 1e-6)
            mix = np.clip((day_f - drift.start_day) / width, 0.0, 1.0)
            label = (a & (mix >= 0.5)).astype(np.int32)
        else:  # recurring: weekend regime
            wd = (np.floor(day_f).astype(int) + weekday[0]) % 7
            mix = ((wd >= 5) & (day_f >= drift.start_day)).astype(float)
            label = (a & (mix > 0)).astype(np.int32)
        mix = mix * a
    real = drift is not None and drift.drift_type == "real"
    # item chain, vectorised across users per step
    items = np.zeros((n_u, epu), dtype=np.int64)
    cum_theta0, cum_theta1 = np.cumsum(theta0, 1), np.cumsum(theta1, 1)
    prev = np.full(n_u, -1)
    for j in range(epu):
        cum = cum_theta0 * (1 - mix[:, j : j + 1]) + cum_theta1 * mix[:, j : j + 1]
        topic = np.minimum((rng.random((n_u, 1)) * cum[:, -1:] > cum).sum(1), k - 1)
        avail = arrival_day[None, :] <= day_f[:, j : j + 1]  # (n_u, n_i) small catalogues
        wmat = np.where((item_topic[None, :] == topic[:, None]) & avail, weight[None, :], 0.0)
        cw = np.cumsum(wmat, 1)
        pop = (rng.random((n_u, 1)) * cw[:, -1:] > cw).sum(1)
        regime = (label[:, j] if real else np.zeros(n_u, dtype=np.int32)).astype(np.int64)
        s = succ[regime, np.maximum(prev, 0), rng.integers(0, c.n_successors, n_u)]
        follow = (
            (prev >= 0)
            & (rng.random(n_u) < c.p_transition)
            & (arrival_day[s] <= day_f[:, j])
            & (item_topic[np.maximum(prev, 0)] == topic)
        )
        items[:, j] = np.where(follow, s, pop)
        prev = items[:, j]
    # replay order
    flat_ts = ts.ravel()
    users = np.repeat(np.arange(n_u), epu)
    order = np.lexsort((np.tile(np.arange(epu), n_u), users, flat_ts))
    ev_items = items.ravel()[order]
    ev_ts = flat_ts[order]
    events = pa.table(
        {
            "idx": pa.array(np.arange(n), pa.int64()),
            "user_id": pa.array(users[order], pa.int32()),
            "item_id": pa.array(ev_items + 1, pa.int32()),
            "ts": pa.array(ev_ts, pa.int64()),
            "category": pa.array(item_topic[ev_items], pa.int32()),
            "rating": pa.nulls(n, pa.float32()),
        }
    )
    regimes = pa.table({"idx": pa.array(np.arange(n), pa.int64()), "regime": label.ravel()[order]})
    rows: dict[str, list[object]] = {k2: [] for k2 in _DRIFT_COLS}
    if drift is not None:
        start_ts = t0 + int(drift.start_day * 86400)
        end_ts = start_ts + int(drift.width_days * 86400)
        if drift.kind == "recurring":
            end_ts = t0 + c.duration_days * 86400
        js = _js(theta0[affected], theta1[affected])
        mag = float(js.mean()) if len(js) else 0.0
        s_idx = int(np.searchsorted(ev_ts, start_ts))
        e_idx = int(np.searchsorted(ev_ts, end_ts))
        glob = [0, drift.kind, drift.drift_type, float(affected.mean()), mag, None]
        for col, v in zip(_DRIFT_COLS, [*glob, start_ts, end_ts, s_idx, e_idx], strict=True):
            rows[col].append(v)
        for u, jv in zip(np.flatnonzero(affected), js, strict=True):
            vals = [len(rows["drift_id"]), drift.kind, drift.drift_type, 1.0, float(jv), int(u)]
            for col, v in zip(_DRIFT_COLS, [*vals, start_ts, end_ts, s_idx, e_idx], strict=True):
                rows[col].append(v)
    for b, day in enumerate(c.new_items_days):
        st = t0 + int(day * 86400)
        si = int(np.searchsorted(ev_ts, st))
        nvals: list[object] = [
            len(rows["drift_id"]),
            "new_items",
            "virtual",
            1.0,
            0.0,
            None,
            st,
            st,
            si,
            si,
        ]
        for col, nv in zip(_DRIFT_COLS, nvals, strict=True):
            rows[col].append(nv)
        del b
    drifts = pa.table(
        {
            "drift_id": pa.array(rows["drift_id"], pa.int32()),
            "kind": pa.array(rows["kind"], pa.string()),
            "drift_type": pa.array(rows["drift_type"], pa.string()),
            "scope": pa.array(rows["scope"], pa.float64()),
            "magnitude": pa.array(rows["magnitude"], pa.float64()),
            "user_id": pa.array(rows["user_id"], pa.int32()),
            "start_ts": pa.array(rows["start_ts"], pa.int64()),
            "end_ts": pa.array(rows["end_ts"], pa.int64()),
            "start_idx": pa.array(rows["start_idx"], pa.int64()),
            "end_idx": pa.array(rows["end_idx"], pa.int64()),
        }
    )
    return SyntheticData(
        events=events,
        users=pa.table(
            {
                "user_id": pa.array(np.arange(n_u), pa.int32()),
                "raw": [f"u{u}" for u in range(n_u)],
            }
        ),
        items=pa.table(
            {
                "item_id": pa.array(np.arange(1, n_i + 1), pa.int32()),
                "raw": [f"i{i}" for i in range(1, n_i + 1)],
                "category": pa.array(item_topic, pa.int32()),
            }
        ),
        categories=pa.table(
            {"category": pa.array(np.arange(k), pa.int32()), "raw": [f"topic{t}" for t in range(k)]}
        ),
        regimes=regimes,
        drifts=drifts,
    )


_DRIFT_COLS = (
    "drift_id", "kind", "drift_type", "scope", "magnitude", "user_id",
    "start_ts", "end_ts", "start_idx", "end_idx",
)  # fmt: skip


def ensure_synthetic(
    con: duckdb.DuckDBPyConnection, name: str, config: SynthConfig, seed: int
) -> DatasetInfo:
    """Generate and store dataset ``name`` unless it exists with the same config and seed."""
    params = json.loads(json.dumps({"config": asdict(config), "seed": seed}))
    if store.has_dataset(con, name):
        info = store.dataset_info(con, name)
        if info.params == params:
            return info
    data = generate(config, seed)
    return store.write_dataset(
        con,
        name,
        events=data.events,
        users=data.users,
        items=data.items,
        categories=data.categories,
        regimes=data.regimes,
        drifts=data.drifts,
        source="synthetic",
        format="synthetic",
        params=params,
        replace=True,
    )
