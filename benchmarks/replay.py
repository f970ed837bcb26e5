"""Replay throughput per policy, the reset/none cost ratio, and the engine's own overhead.

    python benchmarks/replay.py --scenario weekend-shift --scenario beauty-stream [--max-events N]

For each scenario: events/s of the scenario's model under none without label-free signals and
without the forgetting probe (bare inference: the baseline), none with them (the default: one
extra forward pass per batch for the detectors' test-time loss and Δ_{n+1}, and the probe's
re-scoring every 10% of the replay), reset and continual, their cost relative to the baseline
(T2ARec's Table 4 reports T2ARec's test-time cost at about 2.8x Mamba4Rec's on GPU), the wall
time per 1k events of each engine stage (adapt / score / reveal / detect / probe, from the
run's per-batch table), and the same replay with the `popularity` count model, whose scoring is
trivial, as the measure of the engine's own overhead (batching, histories, full ranking,
detectors, run store). All figures come from one process, in one run, on the same events;
pretraining (cached per scenario) is not timed. NDCG@10 of each run is printed beside its speed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from streamsim.adapt import PolicySpec
from streamsim.ingest import ingest
from streamsim.pipeline import prepare, replay_policy
from streamsim.scenario import Scenario, load
from streamsim.store import Workspace, has_dataset

STAGES = ("adapt", "score", "reveal", "detect", "probe")


def bench(
    scenario_name: str, store: Path, max_events: int | None, data_dir: Path
) -> list[dict[str, Any]]:
    overrides: dict[str, object] = {}
    if max_events is not None:
        overrides["replay.max_events"] = max_events
    sc = load(scenario_name, overrides)
    ws = Workspace.resolve(store)
    con = ws.connect()
    ensure_ingested(con, sc, data_dir)
    prepared = prepare(con, ws, sc)
    bare_overrides = {"replay.label_free_signals": False, "replay.probe_events": 0}
    bare = load(scenario_name, {**overrides, **bare_overrides})
    none = PolicySpec(name="bench-none")
    rows = [_measure(con, ws, bare, none, prepared, f"{sc.model.name} none, bare inference")]
    for tta in ("none", "reset", "continual"):
        policy = PolicySpec(name=f"bench-{tta}", tta=tta)  # type: ignore[arg-type]
        rows.append(_measure(con, ws, sc, policy, prepared, f"{sc.model.name} {tta}"))
    pop = load(scenario_name, {**overrides, "model.name": "popularity", "model.config": {}})
    pop_prepared = prepare(con, ws, pop)
    rows.append(_measure(con, ws, pop, none, pop_prepared, "popularity none (engine overhead)"))
    return rows


def _measure(
    con: Any, ws: Workspace, sc: Scenario, policy: PolicySpec, prepared: Any, label: str
) -> dict[str, Any]:
    started = time.perf_counter()
    run_id = replay_policy(con, ws, sc, policy, prepared)
    elapsed = time.perf_counter() - started
    (n,) = con.execute("SELECT n_events FROM runs WHERE run_id = ?", [run_id]).fetchone()
    stage_sums = con.execute(
        "SELECT "
        + ", ".join(f"coalesce(sum(time_{s}), 0)" for s in STAGES)
        + ", sum(backward_passes)"
        " FROM run_batches WHERE run_id = ?",
        [run_id],
    ).fetchone()
    (ndcg,) = con.execute(
        "SELECT avg(ndcg10) FROM run_events WHERE run_id = ?", [run_id]
    ).fetchone()
    return {
        "label": label,
        "events": n,
        "events_per_s": n / elapsed,
        "ms_per_1k": {s: 1e6 * v / n for s, v in zip(STAGES, stage_sums[: len(STAGES)])},
        "backward_per_1k": 1e3 * stage_sums[len(STAGES)] / n,
        "ndcg10": ndcg,
    }


def ensure_ingested(con: Any, sc: Scenario, data_dir: Path) -> None:
    """Real-data scenarios: ingest their dataset from `data_dir/<name>` when the store lacks it."""
    if sc.data.synthetic is None and not has_dataset(con, sc.data.dataset):
        ingest(con, data_dir / sc.data.dataset, name=sc.data.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", action="append", default=None)
    parser.add_argument("--store", type=Path, default=None, help="workspace (default: a temp dir)")
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="real logs")
    args = parser.parse_args()
    scenarios = args.scenario or ["weekend-shift"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp)
        for name in scenarios:
            rows = bench(name, store, args.max_events, args.data)
            base = rows[0]["events_per_s"]
            print(f"\n{name} ({rows[0]['events']} replay events)\n")
            print(
                "| run | events/s | cost vs none | "
                + " | ".join(f"{s} ms/1k" for s in STAGES)
                + " | backward/1k | NDCG@10 |"
            )
            print("|" + "---|" * (len(STAGES) + 5))
            for r in rows:
                stages = " | ".join(f"{r['ms_per_1k'][s]:.0f}" for s in STAGES)
                print(
                    f"| {r['label']} | {r['events_per_s']:.0f} | {base / r['events_per_s']:.2f}x"
                    f" | {stages} | {r['backward_per_1k']:.1f} | {r['ndcg10']:.4f} |"
                )
            for r in rows[2:4]:
                print(f"{r['label']} / bare inference: {base / r['events_per_s']:.2f}x")


if __name__ == "__main__":
    main()
