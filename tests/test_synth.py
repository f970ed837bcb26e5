"""Synthetic generator: determinism, ground truth statistics, a real sequential signal."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from streamsim import scenario, store, synth
from streamsim.errors import ScenarioError

SMALL = synth.SynthConfig(n_users=300, n_items=200, n_topics=6, events_per_user=20)


def _fingerprint(cfg: synth.SynthConfig, seed: int) -> str:
    con = store.connect_memory()
    return synth.ensure_synthetic(con, "s", cfg, seed).fingerprint


def test_deterministic_by_seed() -> None:
    cfg = replace(SMALL, drifts=(synth.DriftSpec(kind="sudden", start_day=30.0, scope=0.5),))
    a, b = synth.generate(cfg, 1), synth.generate(cfg, 1)
    assert a.events.equals(b.events)
    assert a.drifts.equals(b.drifts)
    assert a.regimes.equals(b.regimes)
    assert _fingerprint(cfg, 1) == _fingerprint(cfg, 1) != _fingerprint(cfg, 2)


def _events(d: synth.SyntheticData) -> dict[str, np.ndarray]:
    ev = d.events.to_pydict()
    out = {k: np.asarray(v) for k, v in ev.items() if k != "rating"}
    out["regime"] = np.asarray(d.regimes.column("regime"))
    return out


def _user_topic_js(ev: dict[str, np.ndarray], users: set[int], split: np.ndarray, k: int) -> float:
    """Mean over `users` of the JS between their topic mixtures inside and outside `split`."""
    out = []
    for u in users:
        m = ev["user_id"] == u
        p0 = np.bincount(ev["category"][m & ~split], minlength=k)
        p1 = np.bincount(ev["category"][m & split], minlength=k)
        out.append(float(synth._js(p0 / p0.sum(), p1 / p1.sum())))
    return float(np.mean(out))


LONG = synth.SynthConfig(n_users=150, n_items=120, n_topics=6, events_per_user=400)


@pytest.mark.parametrize("magnitude", [0.1, 0.3, 0.5])
def test_virtual_drift_magnitude_scope_and_regimes_are_measured_in_the_events(
    magnitude: float,
) -> None:
    drift = synth.DriftSpec(kind="sudden", start_day=28.0, scope=0.6, magnitude=magnitude)
    d = synth.generate(replace(LONG, drifts=(drift,)), 0)
    ev = _events(d)
    rows = d.drifts.to_pylist()
    g = rows[0]
    assert g["user_id"] is None
    assert g["magnitude"] == pytest.approx(magnitude, abs=1e-6)  # calibrated, not approximate
    affected = {r["user_id"] for r in rows[1:]}
    assert abs(len(affected) / LONG.n_users - 0.6) < 0.1
    assert g["scope"] == pytest.approx(len(affected) / LONG.n_users)
    assert set(ev["user_id"][ev["regime"] == 1]) == affected
    after = ev["ts"] >= g["start_ts"]
    assert np.all(after[ev["regime"] == 1])
    # JS between each affected user's measured topic mixtures before and after the drift:
    # about the configured magnitude (~200 draws per side add a little sampling noise)
    measured = _user_topic_js(ev, affected, after, LONG.n_topics)
    noise = _user_topic_js(ev, set(range(LONG.n_users)) - affected, after, LONG.n_topics)
    assert noise < 0.02
    assert magnitude - 0.01 <= measured <= magnitude + noise + 0.03, (measured, noise)


def test_unreachable_magnitude_is_a_clear_error() -> None:
    flat = replace(LONG, dirichlet_alpha=50.0)  # near-uniform mixtures: rolling changes little
    drift = synth.DriftSpec(kind="sudden", start_day=28.0, magnitude=0.6)
    with pytest.raises(ScenarioError, match=r"'magnitude': 0\.6 is not reachable; the largest"):
        synth.generate(replace(flat, drifts=(drift,)), 0)


def test_real_drift_changes_the_successor_rule_not_the_interests() -> None:
    drift = synth.DriftSpec(
        kind="sudden", start_day=28.0, scope=1.0, magnitude=0.8, drift_type="real"
    )
    ev = _events(synth.generate(replace(LONG, p_transition=0.9, drifts=(drift,)), 1))
    after = ev["regime"] == 1
    assert _user_topic_js(ev, set(range(LONG.n_users)), after, LONG.n_topics) < 0.02

    def pair_share(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
        """Share of b's consecutive (prev, next) pairs that also occur in a's."""
        order = np.lexsort((ev["idx"], ev["user_id"]))
        u, it = ev["user_id"][order], ev["item_id"][order]
        same = u[1:] == u[:-1]
        pairs = it[:-1] * 10_000 + it[1:]
        a = set(pairs[same & mask_a[order][1:]].tolist())
        b = pairs[same & mask_b[order][1:]]
        return float(np.isin(b, list(a)).mean())

    day = (ev["ts"] - ev["ts"].min()) / 86_400
    early, late = day < 14, (day >= 14) & ~after  # two regime-0 periods, as a control
    # the regime-1 transitions leave the regime-0 pair set (0.82 -> 0.58 measured with seed 1)
    assert pair_share(early, late) - pair_share(early, after) > 0.15


def test_recurring_drift_has_a_ground_truth_row_per_switch() -> None:
    drift = synth.DriftSpec(kind="recurring", scope=1.0, magnitude=0.3)
    cfg = replace(SMALL, duration_days=28, drifts=(drift,))
    d = synth.generate(cfg, 0)
    ev = _events(d)
    glob = [r for r in d.drifts.to_pylist() if r["user_id"] is None]
    assert len(glob) == 8  # 4 weeks: Saturday 00:00 and Monday 00:00 each week
    for r in glob:
        when = datetime.fromtimestamp(r["start_ts"], timezone.utc)
        assert (when.weekday(), when.hour, when.minute) in {(5, 0, 0), (0, 0, 0)}
        assert r["start_idx"] == np.searchsorted(ev["ts"], r["start_ts"])
    weekend = np.array(
        [datetime.fromtimestamp(int(t), timezone.utc).weekday() >= 5 for t in ev["ts"]]
    )
    assert np.array_equal(ev["regime"] == 1, weekend)


def test_sessions_weekday_share_and_early_period() -> None:
    cfg = replace(
        SMALL,
        events_per_user=40,
        session_mean_events=8.0,
        session_gap_s=120.0,
        weekday_share=0.5,
        early_days=14.0,
        weekday_share_early=0.95,
        duration_days=42,
    )
    ev = _events(synth.generate(cfg, 2))
    order = np.lexsort((ev["idx"], ev["user_id"]))
    u, t = ev["user_id"][order], ev["ts"][order]
    gaps = np.diff(t)[u[1:] == u[:-1]]
    # 40 events in 5 sessions: 35 of 39 gaps lie inside sessions (minutes), 4 between them
    assert abs(float(np.mean(gaps < 1800)) - 35 / 39) < 0.05
    day = (ev["ts"] - ev["ts"].min()) / 86_400
    weekend = np.array(
        [datetime.fromtimestamp(int(x), timezone.utc).weekday() >= 5 for x in ev["ts"]]
    )
    assert abs(float(np.mean(~weekend[day < 13])) - 0.95) < 0.03
    assert abs(float(np.mean(~weekend[day >= 15])) - 0.5) < 0.05


def test_new_items_appear_only_after_their_arrival() -> None:
    cfg = replace(SMALL, new_items_days=(20.0, 40.0), new_items_count=30)
    d = synth.generate(cfg, 0)
    ev = _events(d)
    arrivals = [r["start_ts"] for r in d.drifts.to_pylist() if r["kind"] == "new_items"]
    assert len(arrivals) == 2
    for b, t_new in enumerate(arrivals):
        ids = np.arange(cfg.n_items - 60 + 30 * b + 1, cfg.n_items - 60 + 30 * (b + 1) + 1)
        seen = np.isin(ev["item_id"], ids)
        assert seen.any()
        assert np.all(ev["ts"][seen] >= t_new)
        first = ev["ts"][seen].min()
        assert first - t_new < 2 * 86_400  # they are picked up soon after arriving


def test_no_drift_stream_is_stationary() -> None:
    sc = scenario.load("no-drift")
    cfg = replace(sc.data.synthetic, n_users=150, events_per_user=400)
    ev = _events(synth.generate(cfg, 0))
    late = (ev["ts"] - ev["ts"].min()) / 86_400 >= cfg.duration_days / 2
    users = set(range(cfg.n_users))
    assert _user_topic_js(ev, users, late, cfg.n_topics) < 0.02  # sampling noise only
    drifted = replace(cfg, drifts=(synth.DriftSpec(kind="sudden", start_day=28.0, magnitude=0.3),))
    ev_d = _events(synth.generate(drifted, 0))
    late_d = (ev_d["ts"] - ev_d["ts"].min()) / 86_400 >= 28
    assert _user_topic_js(ev_d, users, late_d, cfg.n_topics) > 0.2  # the same test sees drift


def test_no_drift_has_one_regime_and_split_has_no_leakage() -> None:
    sc = scenario.load("no-drift")
    d = synth.generate(replace(sc.data.synthetic, n_users=200), 0)
    assert set(np.array(d.regimes.column("regime")).tolist()) == {0}
    assert d.drifts.num_rows == 0
    ts = np.array(d.events.column("ts"))
    assert np.all(np.diff(ts) >= 0)
    n = len(ts)
    a, b = int(sc.split.valid_start * n), int(sc.split.replay_start * n)
    assert ts[:a].max() <= ts[a:b].min()
    assert ts[a:b].max() <= ts[b:].min()


def test_transition_model_beats_popularity() -> None:
    d = synth.generate(SMALL, 3)
    ev = d.events.to_pydict()
    users, items = np.array(ev["user_id"]), np.array(ev["item_id"])
    n, cut = len(items), int(0.7 * len(items))
    n_items = SMALL.n_items + 1
    counts = np.zeros((n_items, n_items))
    last = np.full(SMALL.n_users, -1)
    pairs = []
    for i in range(n):
        u, it = users[i], items[i]
        if last[u] >= 0:
            if i < cut:
                counts[last[u], it] += 1
            else:
                pairs.append((last[u], it))
        last[u] = it
    pop = np.bincount(items[:cut], minlength=n_items)
    top_pop = set(np.argsort(-pop)[:10].tolist())
    prev = np.array([p for p, _ in pairs])
    tgt = np.array([t for _, t in pairs])
    scores = counts[prev] + 1e-6 * pop[None, :]
    top_tr = np.argsort(-scores, axis=1)[:, :10]
    hr_tr = float(np.mean([t in row for t, row in zip(tgt, top_tr, strict=True)]))
    hr_pop = float(np.mean([t in top_pop for t in tgt]))
    assert hr_tr > hr_pop + 0.1, (hr_tr, hr_pop)


def test_shipped_synthetic_scenarios_split_without_leakage() -> None:
    from streamsim.splits import resolve_split

    con = store.connect_memory()
    for name, _ in scenario.list_bundled():
        sc = scenario.load(name)
        if sc.data.synthetic is None:
            continue
        cfg = replace(sc.data.synthetic, n_users=150)  # same shape, fewer users: fast
        synth.ensure_synthetic(con, sc.data.dataset, cfg, sc.seed)
        sp = resolve_split(con, sc.data.dataset, sc.split)
        ts = np.array(
            con.execute(
                "SELECT ts FROM events WHERE dataset = ? ORDER BY idx", [sc.data.dataset]
            ).fetchnumpy()["ts"]
        )
        pre, val, rep = (ts[r.start : r.stop] for r in (sp.pretrain, sp.valid, sp.replay))
        assert min(len(pre), len(val), len(rep)) > 0, name
        assert pre.max() < val.min(), name
        assert val.max() < rep.min(), name


def test_a_synthetic_scenario_never_overwrites_ingested_data() -> None:
    from streamsim.store import write_dataset
    from tests.support.toy import toy_events

    con = store.connect_memory()
    events, users, items = toy_events()
    write_dataset(con, "mine", events=events, users=users, items=items, source="t", format="csv")
    with pytest.raises(ScenarioError, match="dataset 'mine' exists and is not synthetic"):
        synth.ensure_synthetic(con, "mine", SMALL, 0)
    assert store.dataset_info(con, "mine").n_events == events.num_rows
