"""Synthetic generator: determinism, ground truth statistics, a real sequential signal."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from streamsim import scenario, store, synth

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


def test_ground_truth_matches_config() -> None:
    drift = synth.DriftSpec(kind="sudden", start_day=30.0, scope=0.4, magnitude=0.4)
    cfg = replace(SMALL, drifts=(drift,), new_items_days=(40.0,), new_items_count=30)
    d = synth.generate(cfg, 0)
    ev = d.events.to_pydict()
    ts, items, users = np.array(ev["ts"]), np.array(ev["item_id"]), np.array(ev["user_id"])
    regime = np.array(d.regimes.column("regime"))
    g = d.drifts.to_pylist()[0]
    assert g["user_id"] is None
    assert abs(g["scope"] - 0.4) < 0.08
    assert g["magnitude"] >= drift.magnitude - 0.05
    affected = {r["user_id"] for r in d.drifts.to_pylist()[1:] if r["kind"] == "sudden"}
    assert set(users[regime == 1]) <= affected
    assert np.all(ts[regime == 1] >= g["start_ts"])
    # measured per-user topic mixture of targets before/after the drift start: affected users'
    # JS divergence exceeds that of unaffected users (same sampling noise) by a clear margin
    cat = np.array(ev["category"])
    after = ts >= g["start_ts"]

    def user_js(u: int) -> float:
        m = users == u
        p0 = np.bincount(cat[m & ~after], minlength=6) + 0.5
        p1 = np.bincount(cat[m & after], minlength=6) + 0.5
        return float(synth._js(p0 / p0.sum(), p1 / p1.sum()))

    js_aff = np.mean([user_js(u) for u in affected])
    js_not = np.mean([user_js(u) for u in set(range(cfg.n_users)) - affected])
    assert js_aff > js_not + 0.1, (js_aff, js_not)
    # new items only after their arrival
    t_new = [r for r in d.drifts.to_pylist() if r["kind"] == "new_items"][0]["start_ts"]
    new_ids = np.arange(cfg.n_items - 30 + 1, cfg.n_items + 1)
    is_new = np.isin(items, new_ids)
    assert is_new.any()
    assert np.all(ts[is_new] >= t_new)


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
