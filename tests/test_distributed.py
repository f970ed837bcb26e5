"""A replay across two torchrun ranks (gloo) stores what the one-process replay stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamsim.distributed import rank_ranges
from streamsim.pipeline import run_scenario
from streamsim.scenario import load
from streamsim.store import Workspace
from tests.test_golden_replay import ranks_digest
from tests.test_sweep import TINY

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ["none", "reset-entropy", "online"]  # time chunks, time chunks, rank 0 alone
# sensitive detectors, so that alarms (raised by rank 0 from every rank's inputs) are compared;
# one on a per-event signal, one on a per-batch signal
DETECTORS = [
    {"name": "page_hinkley", "signal": "ndcg10", "params": {"threshold": 0.5}},
    {
        "name": "page_hinkley",
        "signal": "tta_loss",
        "params": {"threshold": 0.001, "min_instances": 1, "delta": 0.0},
    },
]


def test_rank_ranges_cover_every_batch_once_in_order() -> None:
    starts = list(range(100, 1000, 64))  # 15 batches, the last one short
    ranges = rank_ranges(starts, 1000, 2)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == len(starts)
    assert ranges[0][1] == ranges[1][0]
    assert abs((starts[ranges[1][0]] - 100) - (1000 - starts[ranges[1][0]])) <= 64  # balanced
    few = rank_ranges([100], 1000, 3)  # more ranks than batches: some ranks get none
    assert [b for lo, hi in few for b in range(lo, hi)] == [0]


@pytest.mark.usefixtures("one_thread")
def test_two_ranks_give_the_one_process_ranks_bit_for_bit(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    overrides = {**TINY, "policies": POLICIES, "detectors": DETECTORS, "replay.batch_events": 32}
    ws = Workspace.resolve(store)
    con = ws.connect()
    single = run_scenario(con, ws, load("weekend-shift", overrides), dashboard=False)
    con.close()
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "streamsim", "--store", str(store), "replay", "--scenario",
            "weekend-shift", "--distributed", "--no-dashboard", "--json"]  # fmt: skip
    for policy in POLICIES:
        argv += ["-p", policy]
    for key, value in TINY.items():
        if key != "policies":
            argv += ["--set", f"{key}={value}"]
    argv += ["--set", f"detectors={json.dumps(DETECTORS)}", "--set", "replay.batch_events=32"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    con = ws.connect(read_only=True)
    rows = con.execute(
        "SELECT run_id, policy, manifest FROM runs WHERE run_id NOT IN (SELECT unnest(?))",
        [list(single.run_ids)],
    ).fetchall()
    keys = dict(con.execute("SELECT run_id, scenario_hash FROM runs").fetchall())
    distributed = {policy: run_id for run_id, policy, _ in rows}
    assert sorted(distributed) == sorted(POLICIES)
    fired: set[str] = set()
    for s in single.summaries:
        assert ranks_digest(con, distributed[s.policy]) == ranks_digest(con, s.run_id), s.policy
        assert keys[distributed[s.policy]] == keys[s.run_id]  # the same run key
        alarms = "SELECT detector, signal, idx FROM run_alarms WHERE run_id = ? ORDER BY ALL"
        expected = con.execute(alarms, [s.run_id]).fetchall()
        fired |= {signal for _, signal, _ in expected}
        assert con.execute(alarms, [distributed[s.policy]]).fetchall() == expected
    assert fired == {"ndcg10", "tta_loss"}  # alarms on a per-event and a per-batch signal
    chunked = [m for _, p, m in rows if p != "online"]
    assert all('"mode": "time chunks"' in m for m in chunked)
