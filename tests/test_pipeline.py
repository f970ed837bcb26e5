"""Data -> checkpoint -> runs, end to end on a toy dataset with a tiny T2ARec."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from streamsim.adapt import PolicySpec
from streamsim.errors import ModelError, ScenarioError, StorageError
from streamsim.pipeline import count_micro_batches, prepare, replay_policy
from streamsim.probe import build_probe
from streamsim.replay import ReplaySpec
from streamsim.report import summarize
from streamsim.scenario import DataSpec
from streamsim.store import Workspace
from tests.support.tiny_scenario import POLICIES, setup, tiny_scenario

ROOT = Path(__file__).resolve().parents[1]


def events_of(con, run_id: str) -> list[tuple]:  # type: ignore[no-untyped-def,type-arg]
    return con.execute(
        "SELECT idx, batch_id, rank, hit10, ndcg10, rr10, is_repeat, is_cold, top1"
        " FROM run_events WHERE run_id = ? ORDER BY idx",
        [run_id],
    ).fetchall()


def test_runs_are_stored_with_every_event_and_batch(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    replay_len = len(prepared.split.replay)
    ids = {p.name: replay_policy(con, ws, sc, p, prepared) for p in POLICIES[:3]}  # type: ignore[arg-type]
    for name, run_id in ids.items():
        (n,) = con.execute("SELECT count(*) FROM run_events WHERE run_id = ?", [run_id]).fetchall()[
            0
        ]
        assert n == replay_len, name
        status, last = con.execute(
            "SELECT status, last_batch FROM runs WHERE run_id = ?", [run_id]
        ).fetchall()[0]
        assert status == "complete"
        (nb,) = con.execute(
            "SELECT count(*) FROM run_batches WHERE run_id = ?", [run_id]
        ).fetchall()[0]
        assert last == nb - 1
    dist = dict(
        con.execute(
            "SELECT r.policy, max(b.param_distance) FROM run_batches b JOIN runs r"
            " USING (run_id) GROUP BY r.policy"
        ).fetchall()
    )
    assert dist["reset"] == 0.0
    assert dist["none"] == 0.0
    assert dist["continual"] > 0.0
    before_after = con.execute(
        "SELECT count(*) FROM run_batches b JOIN runs r USING (run_id) WHERE r.policy = 'reset'"
        " AND tta_loss_after IS NOT NULL AND tta_loss_before IS NOT NULL"
    ).fetchall()[0][0]
    assert before_after > 0
    assert events_of(con, ids["none"]) != events_of(con, ids["continual"])
    health = con.execute(
        "SELECT count(*), min(rec_gini), max(rec_gini), min(top1_entropy), max(top1_entropy),"
        " max(n_events) FROM run_batches_of(?)",
        [ids["none"]],
    ).fetchall()[0]
    n, g_min, g_max, e_min, e_max, b_max = health
    assert n > 0
    assert 0.0 <= g_min <= g_max < 1.0
    assert 0.0 <= e_min <= e_max <= math.log(b_max) + 1e-9


def test_checkpoints_are_cached_by_content(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    first = prepare(con, ws, sc)  # type: ignore[arg-type]
    stamp = (first.checkpoint.path / "manifest.json").stat().st_mtime_ns
    second = prepare(con, ws, sc)  # type: ignore[arg-type]
    assert second.checkpoint.path == first.checkpoint.path
    assert (second.checkpoint.path / "manifest.json").stat().st_mtime_ns == stamp
    assert (first.checkpoint.path / "model.safetensors").exists()
    manifest = first.checkpoint.manifest
    assert manifest["data_fingerprint"]
    assert manifest["seed"] == 3
    assert "valid.ndcg@10" in manifest["best"]
    import torch

    assert manifest["versions"]["torch_threads"] == str(torch.get_num_threads())  # who trained it


def test_missing_dataset_names_the_hint(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    object.__setattr__(sc, "data", DataSpec(dataset="absent", hint="streamsim ingest X"))
    with pytest.raises(StorageError, match="Hint: streamsim ingest X"):
        prepare(con, ws, sc)  # type: ignore[arg-type]


def test_adaptive_policy_needs_a_test_time_loss(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario(model="popularity", config=(("max_len", 8),))
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="has no test-time loss"):
        replay_policy(con, ws, sc, POLICIES[1], prepared)  # type: ignore[arg-type]


def test_killed_replay_resumes_to_identical_results(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.tiny_scenario", str(killed)], cwd=ROOT, env=env
    )
    deadline = time.time() + 120
    states = killed / "runs"
    while time.time() < deadline and not list(states.glob("*/state.pt")):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(states.glob("*/state.pt")), "the replay never committed a chunk"
    ws, con = setup(killed)
    sc = tiny_scenario()
    partial = con.execute("SELECT run_id, n_events, status FROM runs").fetchall()
    assert len(partial) == 1
    assert partial[0][2] == "running"
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    resumed = replay_policy(con, ws, sc, POLICIES[3], prepared, resume=True)  # type: ignore[arg-type]
    assert resumed == partial[0][0]

    fresh_ws, fresh = setup(tmp_path / "fresh")
    prepared2 = prepare(fresh, fresh_ws, sc)  # type: ignore[arg-type]
    clean = replay_policy(fresh, fresh_ws, sc, POLICIES[3], prepared2)  # type: ignore[arg-type]
    assert events_of(con, resumed) == events_of(fresh, clean)
    assert probes_of(con, resumed) == probes_of(fresh, clean)
    assert len(probes_of(fresh, clean)) >= 10
    assert isinstance(fresh_ws, Workspace)


def probes_of(con, run_id: str) -> list[tuple]:  # type: ignore[no-untyped-def,type-arg]
    return con.execute(
        "SELECT batch_id, probe_ndcg10, probe_hr10, forgetting_ndcg10 FROM run_batches"
        " WHERE run_id = ? AND probe_ndcg10 IS NOT NULL ORDER BY batch_id",
        [run_id],
    ).fetchall()


def test_forgetting_probe_is_zero_without_carried_updates(tmp_path: Path) -> None:
    """The probe re-scores pre-replay requests with the current weights: under none and reset
    those are θ₀ after every micro-batch (forgetting exactly 0); carried updates move it."""
    ws, con = setup(tmp_path / "ws")
    sc = replace(tiny_scenario(), replay=ReplaySpec(batch_events=32, probe_every=0.1))
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    ids = {p.name: replay_policy(con, ws, sc, p, prepared) for p in POLICIES}  # type: ignore[arg-type]
    probes = {name: probes_of(con, run_id) for name, run_id in ids.items()}
    replay_len = len(prepared.split.replay)
    for name, rows in probes.items():
        assert len(rows) == replay_len // round(0.1 * replay_len), name  # every 10% of the replay
    for name in ("none", "reset"):
        assert {r[3] for r in probes[name]} == {0.0}, name
    online = [r[3] for r in probes["continual-online"]]
    assert any(f != 0.0 for f in online)
    se = con.execute(
        "SELECT min(forgetting_se), max(forgetting_se) FROM run_batches WHERE run_id = ?"
        " AND probe_ndcg10 IS NOT NULL",
        [ids["none"]],
    ).fetchall()[0]
    assert se == (0.0, 0.0)
    flips = dict(
        con.execute(
            "SELECT r.policy, max(b.probe_top1_flip) FROM run_batches b JOIN runs r"
            " USING (run_id) WHERE b.probe_ndcg10 IS NOT NULL GROUP BY r.policy"
        ).fetchall()
    )
    assert flips["none"] == flips["reset"] == 0.0
    assert 0.0 < flips["continual-online"] <= 1.0
    base = probes["none"][0][1]
    assert all(r[1] == pytest.approx(base - r[3]) for r in probes["continual-online"])
    # the probe only reads: the same replay without it scores every event identically
    off = replace(sc, content_hash="tiny-no-probe", replay=replace(sc.replay, probe_events=0))
    quiet = replay_policy(con, ws, off, POLICIES[3], prepared)  # type: ignore[arg-type]
    assert events_of(con, quiet) == events_of(con, ids["continual-online"])
    assert probes_of(con, quiet) == []
    summary = summarize(con, ids["continual-online"]).forgetting
    assert summary.points == len(online)
    assert summary.last == online[-1]
    assert summary.max == max(online)
    assert summarize(con, ids["reset"]).forgetting.last == 0.0


def test_oracle_reset_needs_ground_truth_drifts(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    oracle = PolicySpec(name="oracle", tta="continual", reset_at_drifts=True)
    with pytest.raises(ScenarioError, match="'oracle' resets at ground-truth drifts.*'toy' has no"):
        replay_policy(con, ws, sc, oracle, prepared)  # type: ignore[arg-type]
    assert con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]


@pytest.mark.parametrize(
    "replay",
    [ReplaySpec(batch_events=32), ReplaySpec(batch_window_s=3600, max_batch_events=40)],
    ids=["count", "window"],
)
def test_random_resets_are_counted_over_the_replays_micro_batches(
    tmp_path: Path, replay: ReplaySpec
) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = replace(tiny_scenario(), replay=replay)
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    policy = PolicySpec(name="random", tta="continual", tta_lr=0.01, reset_random=3)
    run_id = replay_policy(con, ws, sc, policy, prepared)  # type: ignore[arg-type]
    batches = con.execute(
        "SELECT batch_id, tta_reset FROM run_batches WHERE run_id = ? ORDER BY batch_id", [run_id]
    ).fetchall()
    assert count_micro_batches(con, sc, prepared) == len(batches)  # type: ignore[arg-type]
    resets = [b for b, reset in batches if reset]
    assert len(resets) == 3
    assert max(resets) < len(batches) - 1
    assert summarize(con, run_id).tta_resets == 3
    too_many = replace(policy, name="too-many", reset_random=len(batches))
    with pytest.raises(ScenarioError, match=r"'reset_random': expected at most"):
        replay_policy(con, ws, sc, too_many, prepared)  # type: ignore[arg-type]


def test_probe_requests_lie_before_the_replay(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    split = prepared.split
    probe = build_probe(
        con, "toy", split, probe_events=50, probe_every=0.1, max_len=8, replay_events=100, seed=3
    )
    assert probe is not None
    assert len(probe) == 50
    assert probe.every_events == 10  # 10% of 100 events
    assert int(probe.examples.request_times.max()) < split.replay.t_start
    assert int(probe.examples.request_times.min()) >= split.valid.t_start
    assert int(probe.examples.times.max()) < split.replay.t_start  # histories too
    again = build_probe(
        con, "toy", split, probe_events=50, probe_every=0.1, max_len=8, replay_events=100, seed=3
    )
    assert again is not None
    assert (again.examples.targets == probe.examples.targets).all()
    assert (
        build_probe(
            con, "toy", split, probe_events=0, probe_every=0.1, max_len=8, replay_events=100,
            seed=3,
        )
        is None
    )


def test_sample_filter_policy_records_its_savings_and_pretraining_never_adapts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamsim.adapt import Adapter, PolicySpec
    from streamsim.filters import EtaFilterSpec

    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()

    def refuse(*_: object, **__: object) -> None:
        msg = "pretraining/validation must never run test-time adaptation"
        raise AssertionError(msg)

    with monkeypatch.context() as m:
        m.setattr(Adapter, "adapted", refuse)
        prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    policy = PolicySpec(
        name="reset+eta", tta="reset", tta_lr=0.01, sample_filter=EtaFilterSpec(k=10)
    )
    run_id = replay_policy(con, ws, sc, policy, prepared)  # type: ignore[arg-type]
    shares, saved, n = con.execute(
        "SELECT avg(filtered_share), sum(tta_samples_saved), sum(n_events) FROM run_batches"
        " WHERE run_id = ?",
        [run_id],
    ).fetchone()
    assert 0.0 < shares < 0.9
    assert 0 < saved < n
    (manifest,) = con.execute("SELECT manifest FROM runs WHERE run_id = ?", [run_id]).fetchone()
    info = json.loads(manifest)
    assert info["policy"]["sample_filter"]["k"] == 10
    assert info["split_report"]["replay_events"] == len(prepared.split.replay)
    if (ROOT / ".git").exists():  # a source checkout: its commit and whether it is dirty
        assert len(info["git_revision"]) == 40
        assert isinstance(info["git_dirty"], bool)
    else:
        assert info["git_revision"] is None


def test_tie_shuffled_replay_covers_the_same_events_and_resumes(tmp_path: Path) -> None:
    """Tie-order sanity check: ties replayed in a seeded random order; resumable in that order."""
    from dataclasses import replace

    import numpy as np
    import pyarrow as pa

    from streamsim.compare import compare
    from streamsim.store import iter_events, write_dataset
    from tests.support.toy import toy_events

    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    events, users, items = toy_events(n_events=1200, n_users=40, n_items=30)
    hours = pa.array(events.column("ts").to_numpy() // 21_600 * 21_600)  # 6-hour ties
    events = events.set_column(events.column_names.index("ts"), "ts", hours)
    write_dataset(con, "toy", events=events, users=users, items=items, source="t", format="t")
    # a seeded order inside each tie group, time still sorted
    rows = [b for b in iter_events(con, "toy", tie_seed=5)]  # type: ignore[arg-type]
    idx = np.concatenate([b.column("idx").to_numpy() for b in rows])
    ts = np.concatenate([b.column("ts").to_numpy() for b in rows])
    assert (np.diff(ts) >= 0).all()
    assert sorted(idx.tolist()) == list(range(len(idx)))
    assert (idx != np.arange(len(idx))).any()
    tail = np.concatenate(
        [b.column("idx").to_numpy() for b in iter_events(con, "toy", tie_seed=5, skip=100)]  # type: ignore[arg-type]
    )
    assert (tail == idx[100:]).all()

    sc = tiny_scenario()
    shuffled = replace(sc, replay=replace(sc.replay, tie_shuffle_seed=5), content_hash="tiny-ties")
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    base = replay_policy(con, ws, sc, POLICIES[0], prepared)  # type: ignore[arg-type]
    clean = replay_policy(con, ws, shuffled, POLICIES[2], prepared)  # type: ignore[arg-type]

    calls = {"n": 0}

    def crash(*_: object) -> None:
        calls["n"] += 1
        if calls["n"] == 12:  # after one committed chunk of 10 batches
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay_policy(con, ws, shuffled, POLICIES[2], prepared, progress=crash)  # type: ignore[arg-type]
    resumed = replay_policy(con, ws, shuffled, POLICIES[2], prepared, resume=True)  # type: ignore[arg-type]
    assert events_of(con, resumed) == events_of(con, clean)
    result = compare(con, [base, clean])  # same events, other tie order: comparable
    assert result.pairs[0].n_segments > 0
