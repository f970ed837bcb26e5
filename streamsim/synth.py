"""Synthetic interest-shift streams: configuration, generator with ground truth.

`SynthConfig` and `DriftSpec` are the ``[data.synthetic]`` section of a scenario file; see
docs/scenarios.md for every key. `generate` makes the Arrow tables; `ensure_synthetic` stores
them. The generator, in the order `generate` runs it:

1. **items**: item i belongs to topic (i−1) mod K; within a topic, popularity is Zipf over a
   random rank; every item has `n_successors` preferred successors in its topic (a second,
   independent table is the regime-1 rule under real drift); new items arrive in batches.
2. **times**: each user's events come in sessions (about `session_mean_events` events, gaps of
   about `session_gap_s` seconds); session starts follow a weekly rhythm (weekday vs weekend
   weights, optionally different in the first `early_days`) and a daily one (evening and midday
   peaks).
3. **interests**: users get a Dirichlet(`dirichlet_alpha`) topic mixture θ. Under a *virtual*
   drift, affected users (each with probability `scope`) get the regime-1 mixture
   (1−w)·θ + w·roll(θ, K/2): the same taste, moved to other topics. Under a *real* drift the
   mixtures stay and the successor rule changes: in regime 1 a successor comes from the second
   table with probability w. In both cases w is solved so that the mean Jensen–Shannon
   divergence (base 2) between the two regimes' distributions (the user's topic mixtures, or the
   items' successor distributions) equals `magnitude`; an unreachable magnitude is an error.
4. **regimes** per event: sudden (after `start_day`), gradual (Bernoulli with a sigmoid over
   `width_days`), incremental (mixture ramp over `width_days`; label 1 from its midpoint),
   recurring (weekend days after `start_day`).
5. **the item chain**, vectorised across users per step: topic from the (regime-blended)
   mixture; with `p_transition` the previous item's successor when it is in that topic and has
   arrived, else a Zipf draw among the arrived items of the topic.

Ground truth: `event_regimes` (0/1 per event) and `drifts`: one global row per concept change
(user_id NULL; a recurring drift has one per weekday→weekend and weekend→weekday switch), one row
per affected user, and a `new_items` row per arrival batch. One drift per stream (the loader
refuses more).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from streamsim import config, store
from streamsim.errors import ScenarioError
from streamsim.store import DatasetInfo

DRIFT_KINDS = ("sudden", "gradual", "incremental", "recurring")
DRIFT_TYPES = ("real", "virtual")
DAY = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftSpec:
    """One scheduled interest shift."""

    kind: Literal["sudden", "gradual", "incremental", "recurring"]
    start_day: float = 0.0  # day (from start) the drift begins
    width_days: float = 0.0  # sigmoid width (gradual) / ramp length (incremental)
    scope: float = 1.0  # fraction of users affected
    magnitude: float = 0.5  # mean Jensen-Shannon divergence between the regimes (0..1)
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
    session_mean_events: float = 5.0  # mean events per session (>= 1)
    session_gap_s: float = 180.0  # mean gap between consecutive events of a session
    start_date: str = "2024-01-01"
    duration_days: int = 56
    weekday_share: float | None = None  # share of sessions on weekdays (None: mild weekend boost)
    early_days: float = 0.0  # the first `early_days` days use `weekday_share_early` instead
    weekday_share_early: float | None = None
    new_items_days: tuple[float, ...] = ()  # days at which batches of new items enter
    new_items_count: int = 0  # items per entering batch
    drifts: tuple[DriftSpec, ...] = ()

    @classmethod
    def from_table(cls, table: Any, where: str) -> SynthConfig:
        """Build and check a ``[data.synthetic]`` table (every drift in it too)."""
        kw = config.bind(cls, table, where, skip=("drifts",))
        raw_drifts = table.get("drifts", []) if isinstance(table, dict) else []
        if not isinstance(raw_drifts, list):
            msg = f"{where} key 'drifts': expected a list of tables; got {raw_drifts!r}"
            raise ScenarioError(msg)
        drifts = []
        for i, d in enumerate(raw_drifts):
            dw = f"{where[:-1]}.drifts[{i}]]"
            spec = DriftSpec(**config.bind(DriftSpec, d, dw))
            if not 0.0 < spec.scope <= 1.0:
                msg = f"{dw} key 'scope': expected 0 < scope <= 1; got {spec.scope}"
                raise ScenarioError(msg)
            if not 0.0 <= spec.magnitude <= 1.0:
                msg = f"{dw} key 'magnitude': expected 0..1; got {spec.magnitude}"
                raise ScenarioError(msg)
            config.at_least_zero(spec.start_day, f"{dw} key 'start_day'")
            config.at_least_zero(spec.width_days, f"{dw} key 'width_days'")
            drifts.append(spec)
        cfg = cls(**kw, drifts=tuple(drifts))
        for key in ("n_users", "n_items", "n_topics", "events_per_user", "duration_days"):
            config.at_least_zero(getattr(cfg, key), f"{where} key {key!r}", strict=True)
        if cfg.n_topics > cfg.n_items:
            msg = f"{where}: n_topics ({cfg.n_topics}) > n_items ({cfg.n_items})"
            raise ScenarioError(msg)
        if not 0.0 <= cfg.p_transition <= 1.0:
            msg = f"{where} key 'p_transition': expected 0..1; got {cfg.p_transition}"
            raise ScenarioError(msg)
        for key in ("weekday_share", "weekday_share_early"):
            value = getattr(cfg, key)
            if value is not None and not 0.0 <= value <= 1.0:
                msg = f"{where} key {key!r}: expected a share in 0..1; got {value}"
                raise ScenarioError(msg)
        for key in ("zipf_a", "dirichlet_alpha", "session_gap_s"):
            config.at_least_zero(getattr(cfg, key), f"{where} key {key!r}", strict=True)
        config.at_least_zero(cfg.n_successors, f"{where} key 'n_successors'", strict=True)
        config.at_least_zero(cfg.new_items_count, f"{where} key 'new_items_count'")
        if cfg.session_mean_events < 1:
            msg = f"{where} key 'session_mean_events': expected >= 1; got {cfg.session_mean_events}"
            raise ScenarioError(msg)
        if not 0.0 <= cfg.early_days <= cfg.duration_days:
            msg = (
                f"{where} key 'early_days': expected 0..duration_days ({cfg.duration_days});"
                f" got {cfg.early_days}"
            )
            raise ScenarioError(msg)
        for day in cfg.new_items_days:
            if not 0.0 <= day < cfg.duration_days:
                msg = (
                    f"{where} key 'new_items_days': expected days in [0, {cfg.duration_days});"
                    f" got {day}"
                )
                raise ScenarioError(msg)
        n_new = cfg.new_items_count * len(cfg.new_items_days)
        if n_new > cfg.n_items - cfg.n_topics:
            msg = (
                f"{where}: {n_new} new items (new_items_count x new_items_days) leave fewer than"
                f" n_topics ({cfg.n_topics}) of the {cfg.n_items} items at the start"
            )
            raise ScenarioError(msg)
        try:
            datetime.fromisoformat(cfg.start_date)
        except ValueError:
            msg = (
                f"{where} key 'start_date': expected an ISO date (2024-01-01);"
                f" got {cfg.start_date!r}"
            )
            raise ScenarioError(msg) from None
        if len(cfg.drifts) > 1:
            msg = (
                f"{where[:-1]}.drifts]: the generator makes one drift per stream; got"
                f" {len(cfg.drifts)} (use one scenario per drift)"
            )
            raise ScenarioError(msg)
        for d in cfg.drifts:
            if d.start_day > cfg.duration_days:
                msg = (
                    f"{where}: drift start_day {d.start_day} after the end of the stream "
                    f"(duration_days = {cfg.duration_days})"
                )
                raise ScenarioError(msg)
        return cfg


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


def _solve_weight(p: np.ndarray, q: np.ndarray, magnitude: float, what: str) -> float:
    """w in [0, 1] with mean JS(p, (1−w)p + w·q) = magnitude over the rows (bisection)."""
    if len(p) == 0 or magnitude <= 0.0:
        return 0.0
    reach = float(_js(p, q).mean())
    if magnitude > reach + 1e-12:
        msg = (
            f"[[data.synthetic.drifts]] key 'magnitude': {magnitude} is not reachable; the"
            f" largest mean Jensen-Shannon divergence between {what} is {reach:.3f} here"
        )
        raise ScenarioError(msg)
    lo, hi = 0.0, 1.0
    for _ in range(50):  # JS grows monotonically with w along the segment from p to q
        mid = 0.5 * (lo + hi)
        if float(_js(p, (1 - mid) * p + mid * q).mean()) < magnitude:
            lo = mid
        else:
            hi = mid
    return hi


def _successor_masses(succ0: np.ndarray, succ1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each item's two successor distributions on the union of their supports.

    Row i holds the uniform distribution over ``succ0[i]`` and over ``succ1[i]`` (repeated ids
    merged) on the same ≤ 2·n_successors slots, padded with zero mass: JS needs nothing else.
    """
    n, m = succ0.shape
    ids = np.concatenate([succ0, succ1], axis=1)  # (n, 2m)
    order = np.argsort(ids, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    starts = np.ones_like(ids, dtype=bool)
    starts[:, 1:] = ids[:, 1:] != ids[:, :-1]
    slot = np.cumsum(starts, axis=1) - 1  # merged slot of each entry
    rows = np.repeat(np.arange(n), 2 * m)
    p, q = np.zeros((n, 2 * m)), np.zeros((n, 2 * m))
    np.add.at(p, (rows, slot.ravel()), ((order < m) / m).ravel())
    np.add.at(q, (rows, slot.ravel()), ((order >= m) / m).ravel())
    return p, q


def _day_weights(share: float | None, weekend: np.ndarray) -> np.ndarray:
    """Per-day session weights, normalised to one per week."""
    if share is None:
        return np.where(weekend, 1.3, 1.0) / 7.6
    return np.where(weekend, (1 - share) / 2, share / 5)


def _timestamps(rng: np.random.Generator, c: SynthConfig, t0: int) -> np.ndarray:
    """(n_users, events_per_user) sorted timestamps, in sessions on a weekly and daily rhythm."""
    n_u, epu = c.n_users, c.events_per_user
    weekday0 = datetime.fromtimestamp(t0, timezone.utc).weekday()
    days = np.arange(c.duration_days)
    weekend = (days + weekday0) % 7 >= 5
    day_w = _day_weights(c.weekday_share, weekend)
    if c.early_days > 0:
        early = _day_weights(c.weekday_share_early, weekend)
        day_w = np.where(days < c.early_days, early, day_w)
    hours = np.arange(24)
    hour_w = (
        0.3
        + np.exp(-0.5 * ((hours - 20) / 3.0) ** 2)
        + 0.5 * np.exp(-0.5 * ((hours - 12) / 2.0) ** 2)
    )
    n_s = max(1, min(epu, round(epu / c.session_mean_events)))
    sizes = rng.multinomial(epu - n_s, np.full(n_s, 1.0 / n_s), size=n_u) + 1  # (n_u, n_s)
    d = rng.choice(c.duration_days, size=n_u * n_s, p=day_w / day_w.sum())
    h = rng.choice(24, size=n_u * n_s, p=hour_w / hour_w.sum())
    starts = t0 + d * DAY + h * 3600 + rng.integers(0, 3600, size=n_u * n_s)
    session = np.repeat(np.arange(n_u * n_s), sizes.ravel())  # user-major: epu per user
    gaps = rng.exponential(c.session_gap_s, size=n_u * epu)
    first = np.r_[0, np.cumsum(sizes.ravel())[:-1]]  # first event of each session
    gaps[first] = 0.0
    cum = np.cumsum(gaps)
    offsets = cum - cum[first][session]
    end = t0 + c.duration_days * DAY - 1
    ts = np.minimum(starts[session] + offsets.astype(np.int64), end).reshape(n_u, epu)
    ts.sort(axis=1)
    return ts


def generate(config: SynthConfig, seed: int) -> SyntheticData:
    """Generate a synthetic interest-shift stream with ground truth (deterministic by seed)."""
    if len(config.drifts) > 1:
        msg = f"[data.synthetic]: one drift per stream; got {len(config.drifts)} drifts"
        raise ScenarioError(msg)
    rng = np.random.Generator(np.random.PCG64(seed))
    c = config
    n_u, k, epu, n_i = c.n_users, c.n_topics, c.events_per_user, c.n_items
    drift = c.drifts[0] if c.drifts else None
    # 1. items: topics, Zipf weights, successor tables, arrivals
    item_topic = np.arange(n_i) % k  # item ids 1..n_i -> index 0..n_i-1
    n_new = c.new_items_count * len(c.new_items_days)
    arrival_day = np.zeros(n_i)
    for b, day in enumerate(c.new_items_days):
        lo = n_i - n_new + b * c.new_items_count
        arrival_day[lo : lo + c.new_items_count] = day
    rank = np.empty(n_i)
    members_by_topic = [np.flatnonzero(item_topic == t) for t in range(k)]
    for mem in members_by_topic:
        rank[mem] = rng.permutation(len(mem)) + 1
    weight = rank ** (-c.zipf_a)
    succ = np.empty((2, n_i, c.n_successors), dtype=np.int64)
    for r in range(2):
        for mem in members_by_topic:
            succ[r, mem] = rng.choice(mem, size=(len(mem), c.n_successors))
    # 2. times
    t0 = int(datetime.fromisoformat(c.start_date).replace(tzinfo=timezone.utc).timestamp())
    ts = _timestamps(rng, c, t0)
    day_f = (ts - t0) / DAY
    # 3. interests (virtual drift) or successor rule (real drift), calibrated to the magnitude
    theta0 = rng.dirichlet(np.full(k, c.dirichlet_alpha), size=n_u)
    theta1 = theta0.copy()
    affected = np.zeros(n_u, dtype=bool)
    w_real, per_user_js = 0.0, np.zeros(0)
    if drift is not None:
        affected = rng.random(n_u) < drift.scope
        if drift.drift_type == "virtual":
            shifted = np.roll(theta0, k // 2, axis=1)
            w = _solve_weight(
                theta0[affected], shifted[affected], drift.magnitude, "users' topic mixtures"
            )
            theta1[affected] = (1 - w) * theta0[affected] + w * shifted[affected]
            per_user_js = _js(theta0[affected], theta1[affected])
        else:
            p0, p1 = _successor_masses(succ[0], succ[1])
            w_real = _solve_weight(p0, p1, drift.magnitude, "items' successor distributions")
            real_js = float(_js(p0, (1 - w_real) * p0 + w_real * p1).mean())
            per_user_js = np.full(int(affected.sum()), real_js)
    # 4. regimes: mix = weight of the regime-1 mixture per event; label = ground truth
    mix = np.zeros((n_u, epu))
    label = np.zeros((n_u, epu), dtype=np.int32)
    weekday0 = datetime.fromtimestamp(t0, timezone.utc).weekday()
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
        else:  # recurring: the weekend regime
            wd = (np.floor(day_f).astype(int) + weekday0) % 7
            mix = ((wd >= 5) & (day_f >= drift.start_day)).astype(float)
            label = (a & (mix > 0)).astype(np.int32)
        mix = mix * a
    real = drift is not None and drift.drift_type == "real"
    # 5. the item chain, vectorised across users per step
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
        new_rule = rng.random(n_u) < w_real
        table = (label[:, j].astype(bool) & new_rule & real).astype(np.int64)
        s = succ[table, np.maximum(prev, 0), rng.integers(0, c.n_successors, n_u)]
        follow = (
            (prev >= 0)
            & (rng.random(n_u) < c.p_transition)
            & (arrival_day[s] <= day_f[:, j])
            & (item_topic[np.maximum(prev, 0)] == topic)
        )
        items[:, j] = np.where(follow, s, pop)
        prev = items[:, j]
    # replay order: time, then the user's own order, then the user id
    flat_ts = ts.ravel()
    users = np.repeat(np.arange(n_u), epu)
    order = np.lexsort((np.tile(np.arange(epu), n_u), users, flat_ts))
    ev_items = items.ravel()[order]
    ev_ts = flat_ts[order]
    n = n_u * epu
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
    truth = _GroundTruth(ev_ts)
    if drift is not None:
        mag = float(per_user_js.mean()) if len(per_user_js) else 0.0
        start_ts = t0 + int(drift.start_day * DAY)
        end_ts = start_ts + int(drift.width_days * DAY)
        if drift.kind == "recurring":
            end_ts = t0 + c.duration_days * DAY
            for switch in _weekly_switches(t0, start_ts, end_ts, weekday0):
                truth.add(drift.kind, drift.drift_type, float(affected.mean()), mag, None, switch)
        else:
            truth.add(
                drift.kind, drift.drift_type, float(affected.mean()), mag, None, start_ts, end_ts
            )
        for u, jv in zip(np.flatnonzero(affected), per_user_js, strict=True):
            truth.add(drift.kind, drift.drift_type, 1.0, float(jv), int(u), start_ts, end_ts)
    for day in c.new_items_days:
        truth.add("new_items", "virtual", 1.0, 0.0, None, t0 + int(day * DAY))
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
        drifts=truth.table(),
    )


def _weekly_switches(t0: int, start_ts: int, end_ts: int, weekday0: int) -> list[int]:
    """Midnights (UTC) in [start_ts, end_ts) where the weekday/weekend regime switches."""
    out = []
    first_day = (start_ts - t0 + DAY - 1) // DAY
    for day in range(int(first_day), int((end_ts - t0) // DAY)):
        wd = (day + weekday0) % 7
        if wd in (5, 0):  # Saturday 00:00 (to the weekend regime) and Monday 00:00 (back)
            out.append(t0 + day * DAY)
    return out


class _GroundTruth:
    """Rows of the drifts table; replay indices are the first event at or after each time."""

    def __init__(self, ev_ts: np.ndarray) -> None:
        self.ev_ts = ev_ts
        self.rows: list[tuple[object, ...]] = []

    def add(
        self,
        kind: str,
        drift_type: str,
        scope: float,
        magnitude: float,
        user: int | None,
        start_ts: int,
        end_ts: int | None = None,
    ) -> None:
        end_ts = start_ts if end_ts is None else end_ts
        s_idx = int(np.searchsorted(self.ev_ts, start_ts))
        e_idx = int(np.searchsorted(self.ev_ts, end_ts))
        row = (len(self.rows), kind, drift_type, scope, magnitude, user, start_ts, end_ts)
        self.rows.append((*row, s_idx, e_idx))

    def table(self) -> pa.Table:
        return pa.table(
            {
                name: pa.array([row[j] for row in self.rows], typ)
                for j, (name, typ) in enumerate(_DRIFT_TYPES)
            }
        )


_DRIFT_TYPES = (
    ("drift_id", pa.int32()), ("kind", pa.string()), ("drift_type", pa.string()),
    ("scope", pa.float64()), ("magnitude", pa.float64()), ("user_id", pa.int32()),
    ("start_ts", pa.int64()), ("end_ts", pa.int64()),
    ("start_idx", pa.int64()), ("end_idx", pa.int64()),
)  # fmt: skip


def ensure_synthetic(
    con: duckdb.DuckDBPyConnection, name: str, config: SynthConfig, seed: int
) -> DatasetInfo:
    """Generate and store dataset ``name`` unless it exists with the same config and seed.

    A stored dataset of that name that is not synthetic (ingested data) is never replaced.
    """
    params = json.loads(json.dumps({"config": asdict(config), "seed": seed}))
    if store.has_dataset(con, name):
        info = store.dataset_info(con, name)
        if info.params == params:
            return info
        if info.format != "synthetic":
            msg = (
                f"dataset {name!r} exists and is not synthetic ({info.format}); choose another"
                " [data] dataset name for the synthetic scenario or delete it"
            )
            raise ScenarioError(msg)
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
