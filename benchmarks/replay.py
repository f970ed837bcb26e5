"""Replay throughput per policy, the reset/none cost ratio, and the engine's own overhead.

    python benchmarks/replay.py --scenario weekend-shift [--scenario beauty-stream] [--max-events N]

For each scenario: events/s of the scenario's model under none, reset and continual, the
reset/none cost ratio (T2ARec's Table 4 reports 2.8x T2ARec-vs-Mamba4Rec test-time cost on GPU),
and the same replay with the `popularity` count model, whose scoring is trivial, as the measure of
the engine's own overhead (batching, histories, ranking, detectors, run store). All figures come
from one process, in one run, on the same events.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from streamsim.pipeline import prepare, replay_policy
from streamsim.scenario import PolicySpec, load
from streamsim.store import Workspace


def bench(scenario_name: str, store: Path, max_events: int | None) -> list[tuple[str, float]]:
    overrides: dict[str, object] = {}
    if max_events is not None:
        overrides["replay.max_events"] = max_events
    sc = load(scenario_name, overrides)
    ws = Workspace.resolve(store)
    con = ws.connect()
    prepared = prepare(con, ws, sc)
    rows = []
    for tta in ("none", "reset", "continual"):
        policy = PolicySpec(name=f"bench-{tta}", tta=tta)  # type: ignore[arg-type]
        rows.append((f"{sc.model.name} {tta}", _events_per_s(con, ws, sc, policy, prepared)))
    pop = load(scenario_name, {**overrides, "model.name": "popularity", "model.config": {}})
    pop_prepared = prepare(con, ws, pop)
    none = PolicySpec(name="bench-none")
    overhead = _events_per_s(con, ws, pop, none, pop_prepared)
    rows.append(("popularity none (engine overhead)", overhead))
    return rows


def _events_per_s(con, ws, sc, policy, prepared) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    run_id = replay_policy(con, ws, sc, policy, prepared)
    elapsed = time.perf_counter() - started
    (n,) = con.execute("SELECT n_events FROM runs WHERE run_id = ?", [run_id]).fetchall()[0]
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", action="append", default=None)
    parser.add_argument("--store", type=Path, default=None, help="workspace (default: a temp dir)")
    parser.add_argument("--max-events", type=int, default=None)
    args = parser.parse_args()
    scenarios = args.scenario or ["weekend-shift"]
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp)
        for name in scenarios:
            rows = bench(name, store, args.max_events)
            base = dict(rows)
            model_none = rows[0][1]
            print(f"\n{name}")
            print(f"{'policy':<36}{'events/s':>12}{'cost vs none':>14}")
            for label, eps in rows:
                print(f"{label:<36}{eps:>12.1f}{model_none / eps:>13.2f}x")
            reset = base[rows[1][0]]
            print(f"reset/none cost ratio: {model_none / reset:.2f}x")


if __name__ == "__main__":
    main()
