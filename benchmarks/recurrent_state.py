"""Replay events/s of a frozen recurrent model: recomputing every history vs cached states.

    python benchmarks/recurrent_state.py [--scenario weekend-shift] [--model t2arec] [--store WS]

Pretrains (cached in the workspace) the scenario's model, then replays policy `none` as bare
inference (no label-free signals, no forgetting probe) twice in the same process: recomputing
each request's history (the default) and from each user's cached recurrent state (`[replay]
recurrent_state = true`, `streamsim.recurrent_state`). Prints both events/s, their ratio, the
share of per-event ranks that agree (float32: a recurrence and a chunked scan differ in the last
bits, so a near-tie may swap). Users with more events than the model's window are recomputed
either way.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from streamsim.adapt import PolicySpec
from streamsim.pipeline import prepare, replay_policy
from streamsim.scenario import load
from streamsim.store import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="weekend-shift")
    parser.add_argument("--model", default=None)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.resolve(args.store or tmp)
        con = ws.connect()
        over: dict[str, object] = {
            "replay.label_free_signals": False,
            "replay.probe_events": 0,
            "policies": ["none"],
        }
        if args.model:
            over["model.name"] = args.model
        none = PolicySpec(name="none")
        ranks, rates = {}, {}
        for cached in (False, True):
            sc = load(args.scenario, {**over, "replay.recurrent_state": cached})
            prepared = prepare(con, ws, sc)
            start = time.perf_counter()
            run_id = replay_policy(con, ws, sc, none, prepared)
            seconds = time.perf_counter() - start
            rows = con.execute(
                "SELECT rank FROM run_events WHERE run_id = ? ORDER BY idx", [run_id]
            ).fetchnumpy()["rank"]
            ranks[cached], rates[cached] = rows, len(rows) / seconds
            print(
                f"{'cached states' if cached else 'recomputed':>14}: {rates[cached]:,.0f} events/s"
            )
        same = float(np.mean(ranks[True] == ranks[False]))
        print(
            f"ratio cached / recomputed: {rates[True] / rates[False]:.2f}x; ranks equal: {same:.4%}"
        )


if __name__ == "__main__":
    main()
